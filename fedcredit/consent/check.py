"""The per-run consent check: a store of verified tokens, then vectorised claim checks.

Why a store: one Ed25519 verification costs ~60-160 us, so 1M tokens take one to three minutes
per run. A token's *signature* never changes, though; only the run-dependent checks (audience,
purpose, categories, validity window, revocation) do. So a party verifies each token once, the
first time it sees it, and files the *verified claims* in a :class:`VerifiedStore` under the
token's signature segment (its last 86 base64url characters). A later run cuts the signature
segments out of the bundle (numpy, no per-token Python), looks them up with one ``searchsorted``,
and judges each token on the stored claims:

* a signature is filed only after it verified over its header and payload under a trusted key,
  and the claims filed are the ones it signed; a token presented later with the same signature
  but other bytes is judged on the *stored* claims, so altering a verified token's claims (e.g.
  its subject, purpose or expiry) gains nothing; a token with a new signature is verified afresh
  (forgeries fail, and the refusal is cached for the same trusted-key set);
* grants are filed with their issuer's key fingerprint, so rebinding an issuer name to another
  key voids them (``unknown_issuer``);
* the store on disk is bound by an HMAC-SHA256 under a node-local secret key, so nobody without
  that key (the bank, the coordinator, another tenant of the disk) can plant entries; a store
  whose MAC fails is refused, naming the file;
* revocation, validity and scope are re-evaluated every run on the stored claims, as numpy
  column operations.

Ids of refused enterprises stay on the node (:attr:`CheckResult.reasons`); only counts by reason
and issuer go to the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.consent.tokens import Grant, IssuerKey, RevocationList, TokenRejected, verify_token
from protocols.common import parallel
from protocols.consent.centre import Judge
from protocols.consent.messages import KEY_CHARS

# Refusal reasons, in the order they are decided (the first that applies is recorded).
REASONS = (
    "no_token",
    "malformed",
    "unknown_issuer",
    "forged",
    "wrong_subject",
    "wrong_audience",
    "wrong_purpose",
    "out_of_scope",
    "not_yet_valid",
    "expired",
    "revoked",
)
_REASON_NAMES = np.array(["", *REASONS], dtype=object)  # code 0: accepted
_CODE = {r: i for i, r in enumerate(_REASON_NAMES.tolist())}
_STORE_VERSION = "fedcredit-consent-store/6"
_STORE_MAGIC = b"FCSTORE\x00"  # then u64 header length, JSON header, 64-byte aligned columns
log = logging.getLogger(__name__)


class StoreError(ValueError):
    """A verified-token store that cannot be trusted (bad MAC, wrong format); names the file."""


_TEXT = ("iss", "aud", "purpose", "cats")  # few distinct values: stored as codes into tables
_INTS = ("nbf", "exp", "iat")


SIG_CHARS = KEY_CHARS  # base64url (unpadded) of a 64-byte Ed25519 signature: a compact JWS's last segment


def _prefix(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as a big-endian integer (the sort/search key)."""
    raw = np.ascontiguousarray(keys, dtype=f"S{SIG_CHARS}").view(np.uint8).reshape(-1, SIG_CHARS)
    return np.ascontiguousarray(raw[:, :8]).view(">u8").ravel().astype(np.uint64)


def join_tokens(tokens: Sequence[str | bytes]) -> bytes:
    """Tokens as one newline-separated bundle (what the bank sends); a compact JWS has no newline."""
    return b"\n".join(t if isinstance(t, bytes) else t.encode() for t in tokens)


def bundle_keys(bundle: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, start, end) of each of the ``n`` tokens in ``bundle``, all vectorised.

    The key is the token's signature segment (the last 86 characters after the last '.'); a
    token without one gets b'' (it goes to full verification, which names it malformed)."""
    arr = np.frombuffer(bundle, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    if n == 0:
        if arr.size:
            raise ValueError("a token bundle for 0 positions must be empty")
        return np.zeros(0, dtype=f"S{SIG_CHARS}"), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if nl.size != n - 1:
        raise ValueError(f"token bundle holds {nl.size + 1} tokens for {n} positions")
    ends = np.append(nl, arr.size).astype(np.int64)
    starts = np.concatenate([[0], nl + 1]).astype(np.int64)
    ok = ends - starts > SIG_CHARS + 1
    ok[ok] &= arr[ends[ok] - SIG_CHARS - 1] == ord(".")
    keys = np.zeros(n, dtype=f"S{SIG_CHARS}")
    if ok.any():
        win = np.lib.stride_tricks.sliding_window_view(arr, SIG_CHARS)
        keys[ok] = np.ascontiguousarray(win[ends[ok] - SIG_CHARS]).view(f"S{SIG_CHARS}").ravel()
    return keys, starts, ends


_BLOCK = 1 << 15  # rows per block in rows_equal: its temporaries stay in cache and are reused


def rows_equal(col: np.ndarray, idx: np.ndarray, want: np.ndarray) -> np.ndarray:
    """``col[idx] == want`` for fixed-width byte strings, compared as raw bytes (every byte, so
    exactly numpy's equality for these zero-padded values), block by block: gathering and
    comparing ``uint8`` rows in cache-sized blocks is ~2x faster than numpy's string gather and
    comparison on a million keys, and never allocates a million-row temporary."""
    width = col.dtype.itemsize
    want = np.ascontiguousarray(want, dtype=col.dtype)
    out = np.zeros(want.size, dtype=bool)
    if col.size == 0 or width == 0 or want.size == 0:
        return out
    table = np.ascontiguousarray(col).view(np.uint8).reshape(-1, width)
    if idx.min() < 0 or idx.max() >= len(table):  # checked once here, so the blocks may use mode="clip"
        raise IndexError(f"row index outside the {len(table)}-row column")
    wanted = want.view(np.uint8).reshape(-1, width)
    got = np.empty((min(_BLOCK, want.size), width), dtype=np.uint8)
    same = np.empty(got.shape, dtype=bool)
    for a in range(0, want.size, _BLOCK):
        b = min(a + _BLOCK, want.size)
        g, e = got[: b - a], same[: b - a]
        np.take(table, idx[a:b], axis=0, out=g, mode="clip")  # "raise" would copy through a buffer
        np.equal(g, wanted[a:b], out=e)
        e.all(axis=1, out=out[a:b])
    return out


def _joined(values: tuple[str, ...]) -> str:
    return "|" + "|".join(values) + "|"


def jti_hash(jti: str) -> int:
    """A token id as a 64-bit integer (SHA-256 prefix): revocation is then one ``searchsorted``
    over integers per run. A collision could only make a token look revoked (refused), never
    make a revoked token pass: a listed id always hashes to a listed value."""
    return int.from_bytes(hashlib.sha256(jti.encode()).digest()[:8], "big")


_REVOKED: dict[RevocationList, np.ndarray] = {}  # a few lists per node, each hashed once per process


def revoked_hashes(rl: RevocationList) -> np.ndarray:
    """The sorted :func:`jti_hash` values of ``rl``'s revoked ids, cached per (equal) list, so a run
    re-verifying the same list does not hash its ids again."""
    hit = _REVOKED.get(rl)
    if hit is None:
        # np.sort, not np.unique: duplicates cannot occur (a set) and np.unique imports numpy.ma
        # (~50 ms on a cold process)
        hit = np.sort(np.array([jti_hash(j) for j in rl.revoked], dtype=np.uint64))
        hit.setflags(write=False)
        if len(_REVOKED) >= 16:
            _REVOKED.clear()
        _REVOKED[rl] = hit
    return hit


PARALLEL_MIN = 4096  # tokens to verify before worker processes pay off (~0.5 s pool start-up)


def _verify_chunk(tokens: Sequence[str | bytes], jwks: list[dict[str, Any]]) -> list[tuple[Any, ...] | str]:
    """Worker side of :func:`verify_many`: keys travel as public JWKs (plain dicts), grants come
    back as plain tuples (pickling a million dataclasses would cost seconds)."""
    issuers = {k.name: k for k in (IssuerKey.from_jwk(j) for j in jwks)}
    out: list[tuple[Any, ...] | str] = []
    for t in tokens:
        try:
            g = verify_token(t, issuers)
            out.append((g.iss, g.sub, g.aud, g.purpose, g.cats, g.nbf, g.exp, g.jti, g.iat))
        except TokenRejected as exc:
            out.append(exc.reason)
    return out


def _grants(part: list[tuple[Any, ...] | str]) -> list[Grant | str]:
    return [x if isinstance(x, str) else Grant(*x) for x in part]


def verify_many(
    tokens: Sequence[str | bytes], issuers: Mapping[str, IssuerKey], workers: int | None = None
) -> list[Grant | str]:
    """Per token: its verified :class:`Grant`, or the refusal reason. Large batches (a first
    sighting, e.g. the first demo run) are spread over worker processes (``workers``, default
    the core count; ``FEDCREDIT_PAILLIER_WORKERS=1`` disables), since one Ed25519 verification
    costs 60-160 us and they are independent."""
    jwks = [k.to_jwk() for k in issuers.values()]
    w = parallel.default_workers() if workers is None else max(1, workers)
    if w > 1 and len(tokens) >= PARALLEL_MIN:
        tasks = [(list(tokens[a:b]), jwks) for a, b in parallel.split(len(tokens), w)]
        parts = parallel.map_processes(_verify_chunk, tasks, w)
        if parts is not None:
            return [x for part in parts for x in _grants(part)]
    return _grants(_verify_chunk(tokens, jwks))


class VerifiedStore:
    """Token signature -> verified claims, as numpy columns sorted by signature.

    Lookups are one ``searchsorted`` over the digest column; issuer, audience, purpose and
    categories are codes into small tables, so a run's checks on them are evaluated once per
    distinct value, then gathered.
    """

    def __init__(self) -> None:
        self.cols: dict[str, np.ndarray] = {
            "digest": np.zeros(0, dtype=f"S{SIG_CHARS}"),
            "sub": np.zeros(0, dtype="S18"),
            "jti": np.zeros(0, dtype=np.uint64),  # jti_hash of the token id
            **{k: np.zeros(0, dtype=np.int32) for k in _TEXT},
            **{k: np.zeros(0, dtype=np.int64) for k in _INTS},
        }
        self.tables: dict[str, list[str]] = {k: [] for k in _TEXT}
        # Tokens that failed verification, by SHA-256 of their exact bytes, with the trusted-key
        # set they failed under: the same bytes presented again are refused without another
        # Ed25519 verification (keyed by the whole token, so an altered copy of a good token
        # cannot get the good one refused).
        self.rejected: dict[bytes, tuple[str, bytes]] = {}
        self._prefix: np.ndarray | None = None  # _prefix of the digest column, the search key

    def __len__(self) -> int:
        return int(self.cols["digest"].size)

    @staticmethod
    def digests(tokens: Sequence[str | bytes]) -> np.ndarray:
        """Each token's store key (its signature segment; b'' if it has none)."""
        return bundle_keys(join_tokens(tokens), len(tokens))[0]

    def rows(self, digests: np.ndarray) -> np.ndarray:
        """Store row per digest, -1 where the token was never verified here.

        The search runs on the digests' first 8 bytes as integers (fast), then the full 32 bytes
        must match: a prefix collision can only make a token look new (and be verified again),
        never make an unverified token count as verified."""
        col = self.cols["digest"]
        if col.size == 0 or digests.size == 0:
            return np.full(digests.size, -1, dtype=np.int64)
        if self._prefix is None or self._prefix.size != col.size:
            self._prefix = _prefix(col)  # once per loaded (or grown) store, not per lookup
        want = _prefix(digests)
        if want.size > 4096:  # sorted needles walk the column in order: ~2x faster than random probes
            order = np.argsort(want)
            idx = np.empty(want.size, dtype=np.int64)
            idx[order] = np.searchsorted(self._prefix, want[order])
        else:
            idx = np.searchsorted(self._prefix, want)
        idx = np.minimum(idx, col.size - 1)
        found = rows_equal(col, idx, digests) & (digests != b"")
        return np.where(found, idx, -1).astype(np.int64)

    @staticmethod
    def keyset(issuers: Mapping[str, IssuerKey]) -> bytes:
        """A digest of the trusted issuer keys: a cached refusal holds only under the same set."""
        return hashlib.sha256("|".join(sorted(f"{n}={k.fingerprint}" for n, k in issuers.items())).encode()).digest()

    def refused(self, token: bytes, keyset: bytes) -> str | None:
        """The cached refusal of these exact token bytes under this key set, if any."""
        hit = self.rejected.get(hashlib.sha256(token).digest())
        return hit[0] if hit is not None and hit[1] == keyset else None

    def add_rejected(self, token: bytes, reason: str, keyset: bytes) -> None:
        self.rejected[hashlib.sha256(token).digest()] = (reason, keyset)

    def _codes(self, name: str, values: list[str]) -> np.ndarray:
        """Codes of ``values`` in table ``name`` (new values appended): one dict lookup each."""
        table = self.tables[name]
        index = {v: i for i, v in enumerate(table)}
        for v in dict.fromkeys(values):  # distinct, in first-seen order
            if v not in index:
                index[v] = len(table)
                table.append(v)
        return np.fromiter(map(index.__getitem__, values), dtype=np.int32, count=len(values))

    def add_many(
        self, tokens: Sequence[str | bytes], grants: Sequence[Grant], issuers: Mapping[str, IssuerKey]
    ) -> None:
        """File ``grants`` (which the caller verified from ``tokens`` under ``issuers``) under the
        tokens' digests. The issuer is filed as name#key-fingerprint, so a grant verified under one
        key does not count once that issuer name is bound to another key."""
        if not grants:
            return
        d = self.digests(tokens)
        keep = (self.rows(d) < 0) & (d != b"")
        _, first = np.unique(d, return_index=True)
        keep &= np.isin(np.arange(d.size), first)
        gs = [g for g, k in zip(grants, keep.tolist(), strict=True) if k]
        if not gs:
            return
        n = len(gs)
        tag = {name: f"{name}#{k.fingerprint}" for name, k in issuers.items()}  # once per issuer, not per grant
        subs = [g.sub.encode() for g in gs]
        new = {
            "digest": d[keep],
            # a subject that is not exactly 18 bytes cannot be a USCC: filed as b"", it never
            # matches a row (an "S18" column would otherwise cut "USCC+junk" down to "USCC")
            "sub": np.array([b if len(b) == 18 else b"" for b in subs], dtype="S18"),
            "jti": np.fromiter(map(jti_hash, map(attrgetter("jti"), gs)), dtype=np.uint64, count=n),
            "iss": self._codes("iss", [tag[g.iss] for g in gs]),
            "aud": self._codes("aud", [_joined(g.aud) for g in gs]),
            "purpose": self._codes("purpose", list(map(attrgetter("purpose"), gs))),
            "cats": self._codes("cats", [_joined(g.cats) for g in gs]),
            **{k: np.fromiter(map(attrgetter(k), gs), dtype=np.int64, count=n) for k in _INTS},
        }
        merged = {k: np.concatenate([self.cols[k], new[k]]) for k in self.cols}
        order = np.argsort(_prefix(merged["digest"]), kind="stable")
        self.cols = {k: v[order] for k, v in merged.items()}
        self._prefix = None

    def verify_and_add(
        self, tokens: Sequence[str | bytes], issuers: Mapping[str, IssuerKey]
    ) -> tuple[int, Counter[str]]:
        """Verify tokens not yet in the store and add the good ones: (added, failures by reason)."""
        rows = self.rows(self.digests(tokens))
        good_t: list[str | bytes] = []
        good_g: list[Grant] = []
        failed = Counter[str]()
        keyset = self.keyset(issuers)
        todo = [tokens[int(i)] for i in np.flatnonzero(rows < 0)]
        for t, result in zip(todo, verify_many(todo, issuers), strict=True):
            if isinstance(result, Grant):
                good_g.append(result)
                good_t.append(t)
            else:
                failed[result] += 1
                self.add_rejected(t if isinstance(t, bytes) else t.encode(), result, keyset)
        before = len(self)
        self.add_many(good_t, good_g, issuers)
        return len(self) - before, failed

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], key: bytes) -> Path:
        """Write the store and its HMAC (``path`` + ``.mac``); the key never leaves the node.

        Format (``_STORE_MAGIC``): magic, u64 header length, canonical JSON header (version,
        tables, each column's dtype/shape/offset), then every column's raw little-endian bytes,
        64-byte aligned. Why not ``.npz``: a run loads the whole store, and a zip member costs a
        CRC pass and a copy per column; here the columns are zero-copy views of the one buffer
        the HMAC was computed over (loading 1M tokens: one read, one HMAC pass)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        rej = sorted(self.rejected.items())
        reasons = sorted({v[0] for _, v in rej})
        arrays: dict[str, np.ndarray] = {
            **self.cols,
            # raw bytes as uint8 rows, not numpy "S": an "S" array drops trailing zero bytes
            "rejected_sha": np.array([list(k) for k, _ in rej] or np.zeros((0, 32)), dtype=np.uint8).reshape(-1, 32),
            "rejected_reason": np.array([reasons.index(v[0]) for _, v in rej], dtype=np.uint8),
            "rejected_keys": np.array([list(v[1]) for _, v in rej] or np.zeros((0, 32)), dtype=np.uint8).reshape(
                -1, 32
            ),
        }
        columns: dict[str, list[Any]] = {}
        offset = 0
        for name, arr in arrays.items():
            offset = -(-offset // 64) * 64
            columns[name] = [np.dtype(arr.dtype).newbyteorder("<").str, list(arr.shape), offset]
            offset += arr.nbytes
        header = json.dumps(
            {"version": _STORE_VERSION, "tables": self.tables, "rejected_reasons": reasons, "columns": columns},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        head = _STORE_MAGIC + len(header).to_bytes(8, "little") + header
        base = -(-len(head) // 64) * 64
        buf = bytearray(base + offset)
        buf[: len(head)] = head
        for name, arr in arrays.items():
            at = base + columns[name][2]
            le = np.ascontiguousarray(arr, dtype=np.dtype(arr.dtype).newbyteorder("<"))
            buf[at : at + le.nbytes] = le.tobytes()
        mac = hmac.new(key, buf, hashlib.sha256).hexdigest()
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_bytes(buf)
        os.replace(tmp, p)
        p.with_suffix(p.suffix + ".mac").write_text(mac)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes) -> VerifiedStore:
        """The store at ``path``, or an empty one if there is none; a bad MAC is refused.

        The file is read into memory once and the MAC checked over those exact bytes before any
        is interpreted (no mmap: a file changed after the check must not change what is used);
        the columns are read-only views of that buffer."""
        p = Path(path)
        store = cls()
        if not p.exists():
            return store
        raw = p.read_bytes()
        mac_path = p.with_suffix(p.suffix + ".mac")
        mac = mac_path.read_text().strip() if mac_path.exists() else ""
        if not hmac.compare_digest(mac, hmac.new(key, raw, hashlib.sha256).hexdigest()):
            raise StoreError(
                f"{p}: verified-token store fails its HMAC (altered, or another node's key); delete it to re-verify"
            )
        if not raw.startswith(_STORE_MAGIC):
            # Written by this node (the MAC holds) in an older format: start afresh, so every
            # token is verified again (safe, only slower once).
            log.warning("%s: verified-token store in an older format; re-verifying tokens", p)
            return store
        try:
            at = len(_STORE_MAGIC)
            size = int.from_bytes(raw[at : at + 8], "little")
            meta = json.loads(raw[at + 8 : at + 8 + size])
            if meta.get("version") != _STORE_VERSION:
                log.warning("%s: verified-token store in an older format; re-verifying tokens", p)
                return store
            base = -(-(at + 8 + size) // 64) * 64

            def column(name: str) -> np.ndarray:
                dtype, shape, offset = meta["columns"][name]
                dt_ = np.dtype(dtype)
                count = int(np.prod(shape)) if shape else 1
                arr = np.frombuffer(raw, dtype=dt_, count=count, offset=base + offset).reshape(shape)
                return arr if dt_.isnative or dt_.byteorder == "|" else arr.astype(dt_.newbyteorder("="))

            store.tables = {k: list(meta["tables"][k]) for k in _TEXT}
            store.cols = {k: column(k) for k in store.cols}
            reasons = meta["rejected_reasons"]
            shas = np.ascontiguousarray(column("rejected_sha")).view("V32").ravel().tolist()  # bytes, zeros kept
            keysets = np.ascontiguousarray(column("rejected_keys")).view("V32").ravel().tolist()
            why = [reasons[r] for r in column("rejected_reason").tolist()]
            store.rejected = dict(zip(shas, zip(why, keysets, strict=True), strict=True))
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # the MAC holds: our own bug or an old writer
            raise StoreError(f"{p}: verified-token store cannot be read ({exc}); delete it to re-verify") from None
        return store


def store_key(path: str | os.PathLike[str]) -> bytes:
    """The node-local HMAC key of the store, created (owner-only) on first use."""
    p = Path(path)
    if not p.exists():
        # Written whole under a private name, then linked into place: two runs of one centre that
        # start at once (CentreHost) both see no key; one link wins, the other reads the winner's
        # complete key (never a half-written file, never a second key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, p)
            except FileExistsError:
                pass  # another run created it first: use theirs
        finally:
            tmp.unlink(missing_ok=True)
    key = p.read_bytes()
    if len(key) != 32:
        raise StoreError(f"{p}: store key must be 32 bytes")
    return key


@dataclass(frozen=True)
class ConsentPolicy:
    """What a run needs a token to say: issuers, audience, purpose, categories, day, revocations."""

    issuers: Mapping[str, IssuerKey]
    audience: tuple[str, ...]
    purpose: str
    categories: frozenset[str]
    at: int  # seconds since the epoch
    revocations: Mapping[str, RevocationList] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "issuers": {n: k.fingerprint for n, k in sorted(self.issuers.items())},
            "audience": list(self.audience),
            "purpose": self.purpose,
            "categories": sorted(self.categories),
            "at": self.at,
            "revocation_lists": {n: r.version for n, r in sorted(self.revocations.items())},
        }


@dataclass
class CheckResult:
    """Per position: accepted or the refusal reason, as small-integer codes (no per-token Python
    objects on the per-run path). Reasons and issuers stay on the node."""

    accepted: np.ndarray  # bool
    codes: np.ndarray = field(repr=False)  # int8 index into ("", *REASONS); 0 where accepted
    issuer_codes: np.ndarray = field(repr=False)  # int32 index into issuer_names
    issuer_names: list[str] = field(repr=False)  # the last is "" (unknown / unproven issuer)
    policy: ConsentPolicy
    verified_now: int = 0  # tokens whose signature was checked in this run (not yet in the store)

    @property
    def reasons(self) -> np.ndarray:
        """Per position the refusal reason ('' where accepted), as a str object array."""
        return _REASON_NAMES[self.codes]

    @property
    def issuers(self) -> np.ndarray:
        """Per position the token's issuer ('' if unknown or unproven)."""
        return np.array(self.issuer_names, dtype=object)[self.issuer_codes]

    def counts(self) -> dict[str, int]:
        per = np.bincount(self.codes, minlength=len(_REASON_NAMES))
        return {str(_REASON_NAMES[i]): int(per[i]) for i in np.argsort(_REASON_NAMES[1:]) + 1 if per[i]}

    def by_issuer(self) -> dict[str, dict[str, int]]:
        k = len(self.issuer_names)
        ok = np.bincount(self.issuer_codes[self.accepted], minlength=k)
        no = np.bincount(self.issuer_codes[~self.accepted], minlength=k)
        merged: dict[str, list[int]] = {}
        for name, a, b in zip(self.issuer_names, ok.tolist(), no.tolist(), strict=True):
            if a or b:  # one name may have several codes (keys rotated): add them up
                tot = merged.setdefault(name or "(unknown)", [0, 0])
                tot[0] += a
                tot[1] += b
        return {n: {"accepted": a, "refused": b} for n, (a, b) in sorted(merged.items())}

    def ledger_payload(self) -> dict[str, Any]:
        """Counts only: never an id or a token."""
        return {
            "checked": int(self.accepted.size),
            "accepted": int(self.accepted.sum()),
            "refused": self.counts(),
            "by_issuer": self.by_issuer(),
            "verified_now": self.verified_now,
            **self.policy.describe(),
        }


def check_tokens(
    ids: Sequence[str], tokens: Sequence[str | bytes], policy: ConsentPolicy, store: VerifiedStore
) -> CheckResult:
    """:func:`check_bundle` on a list of tokens (``b""`` where the bank holds none)."""
    if len(tokens) != len(ids):
        raise ValueError(f"{len(tokens)} tokens for {len(ids)} ids")
    return check_bundle(ids, join_tokens(tokens), policy, store)


def check_bundle(ids: Sequence[str], bundle: bytes, policy: ConsentPolicy, store: VerifiedStore) -> CheckResult:
    """Decide, for each position, whether its token authorises using ``ids[i]``'s data.

    ``bundle`` is the tokens joined by newlines (an empty line: the bank holds none, ``no_token``).
    A token is looked up by its signature segment. Only tokens whose signature is not in
    ``store`` are verified (and filed); a token found there is judged on the claims *verified
    when it was filed*, whatever header and payload bytes it arrives with now, so altering a
    verified token's claims gains nothing. Every check then runs on the store's columns.
    """
    n = len(ids)
    keys, starts, ends = bundle_keys(bundle, n)
    code = np.zeros(n, dtype=np.int8)  # index into _REASON_NAMES; 0 = accepted
    code[ends == starts] = _CODE["no_token"]
    unseen = np.flatnonzero((store.rows(keys) < 0) & (code == 0)).tolist()  # few, after the first run
    todo = [(pos, bundle[starts[pos] : ends[pos]]) for pos in unseen]
    return _judge(ids, keys, code, todo, policy, store, None)


def unknown_keys(keys: np.ndarray, store: VerifiedStore) -> np.ndarray:
    """Positions whose key (a token's signature segment, as the bank sends it) is not in ``store``:
    the whole tokens the centre must ask for. Empty keys (no token) are not asked for."""
    return np.flatnonzero((keys != b"") & (store.rows(keys) < 0)).astype(np.int64)


def check_keys(
    ids: Sequence[str],
    keys: np.ndarray,
    positions: np.ndarray,
    tokens: bytes,
    policy: ConsentPolicy,
    store: VerifiedStore,
    rows: np.ndarray | None = None,
) -> CheckResult:
    """:func:`check_bundle` when the bank sent, per position, only its token's key (signature
    segment; b'' for none), plus the whole tokens of ``positions`` (newline-joined, in order):
    those the centre asked for because their key was not in ``store``.

    A known key is judged on the claims filed when its token verified, exactly as a whole token
    with that signature would be (the other bytes are never trusted); a whole token is judged on
    its own signature; a key neither known nor backed by a whole token counts as ``malformed``.
    No bundle of the whole intersection is ever scanned. ``rows`` may pass ``store.rows(keys)``
    if the caller already has it (:meth:`StoreJudge.unknown` does), to look the keys up once."""
    n = len(ids)
    # The sent keys are not copied (a million of them): the whole tokens' own keys override the
    # sent ones at ``positions`` in every lookup instead (``override`` below).
    keys = np.asarray(keys, dtype=f"S{SIG_CHARS}")
    positions = np.asarray(positions, dtype=np.int64)
    fkeys, starts, ends = bundle_keys(tokens, positions.size)
    full = np.zeros(n, dtype=bool)
    full[positions] = True
    rows = store.rows(keys) if rows is None or rows.shape != (n,) else rows.copy()
    rows[positions] = store.rows(fkeys)
    code = np.zeros(n, dtype=np.int8)
    code[(keys == b"") & ~full] = _CODE["no_token"]
    code[positions[ends == starts]] = _CODE["no_token"]
    unseen = (rows < 0) & (code == 0)
    code[unseen & ~full] = _CODE["malformed"]
    where = np.full(n, -1, dtype=np.int64)
    where[positions] = np.arange(positions.size)
    todo = [(pos, tokens[starts[j] : ends[j]]) for pos, j in zip(*_pairs(unseen & full, where), strict=True)]
    return _judge(ids, keys, code, todo, policy, store, rows, (positions, fkeys))


def _pairs(mask: np.ndarray, where: np.ndarray) -> tuple[list[int], list[int]]:
    pos = np.flatnonzero(mask)
    return pos.tolist(), where[pos].tolist()


def _judge(
    ids: Sequence[str],
    keys: np.ndarray,
    code: np.ndarray,
    todo: list[tuple[int, bytes]],
    policy: ConsentPolicy,
    store: VerifiedStore,
    rows: np.ndarray | None,
    override: tuple[np.ndarray, np.ndarray] | None = None,
) -> CheckResult:
    """Verify (once) the tokens in ``todo`` (position, whole token), file the good ones, then
    judge every position whose code is still 0 on the store's verified claims. ``override``
    (positions, their whole tokens' keys) replaces ``keys`` there in a fresh lookup."""
    n = len(ids)
    keyset = store.keyset(policy.issuers)
    fresh: list[tuple[int, bytes]] = []
    for pos, token in todo:
        cached = store.refused(token, keyset)
        if cached is None:
            fresh.append((pos, token))
        else:
            code[pos] = _CODE[cached]
    results = verify_many([t for _, t in fresh], policy.issuers)
    good_t: list[bytes] = []
    good_g: list[Grant] = []
    for (pos, token), result in zip(fresh, results, strict=True):
        if isinstance(result, Grant):
            good_g.append(result)
            good_t.append(token)
        else:
            code[pos] = _CODE[result]
            store.add_rejected(token, result, keyset)
    if good_g:
        store.add_many(good_t, good_g, policy.issuers)  # rows move: look up again
    if good_g or rows is None:
        rows = store.rows(keys)
        if override is not None:
            rows[override[0]] = store.rows(override[1])
    have = (rows >= 0) & (code == 0)
    code[(rows < 0) & (code == 0)] = _CODE["malformed"]  # cannot happen: every unseen token was verified
    names = [v.split("#")[0] for v in store.tables["iss"]]
    issuer = np.full(n, len(names), dtype=np.int32)  # len(names): unknown issuer
    if have.any():
        c, t = store.cols, store.tables
        r = rows[have]
        iss = c["iss"][r]
        issuer[have] = iss

        def per_code(name: str, ok: Callable[[str], bool]) -> np.ndarray:
            """``ok`` evaluated once per distinct value of column ``name``, gathered per row."""
            table = np.array([ok(v) for v in t[name]] or [False], dtype=bool)
            return table[c[name][r]]

        trusted = {f"{n}#{k.fingerprint}" for n, k in policy.issuers.items()}
        revoked = np.zeros(r.size, dtype=bool)
        for name, rl in policy.revocations.items():
            if rl.revoked:
                listed = revoked_hashes(rl)
                jti = c["jti"][r]
                hit = listed[np.minimum(np.searchsorted(listed, jti), listed.size - 1)] == jti
                revoked |= hit & np.array([v == name for v in names], dtype=bool)[iss]
        want_ids = np.asarray(ids, dtype="S18")[have]
        checks = [
            ("unknown_issuer", ~per_code("iss", lambda v: v in trusted)),
            ("wrong_subject", ~rows_equal(c["sub"], r, want_ids)),
            ("wrong_audience", ~per_code("aud", lambda v: all(f"|{a}|" in v for a in policy.audience))),
            ("wrong_purpose", ~per_code("purpose", lambda v: v == policy.purpose)),
            ("out_of_scope", ~per_code("cats", lambda v: all(f"|{x}|" in v for x in policy.categories))),
            ("not_yet_valid", c["nbf"][r] > policy.at),
            ("expired", c["exp"][r] <= policy.at),
            ("revoked", revoked),
        ]
        sub = np.zeros(r.size, dtype=np.int8)
        for reason, bad in reversed(checks):  # the earliest check wins
            sub[bad] = _CODE[reason]
        code[have] = sub
    return CheckResult(code == 0, code, issuer, [*names, ""], policy, len(fresh))


def _immutable_base(a: np.ndarray) -> object | None:
    """The ``bytes`` object under ``a`` (through views and memoryviews), if it has one."""
    base: object = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, bytes) else None


def same_keys(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two key arrays hold the same keys, so one store lookup serves both (the judge's
    ``unknown`` and ``decide`` see the same keys, but after a round trip for whole tokens as a
    new array over the same bytes). Free when both view one ``bytes`` object at one place."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    ai, bi = a.__array_interface__, b.__array_interface__
    base = _immutable_base(a)
    if base is not None and base is _immutable_base(b) and ai["data"] == bi["data"] and ai["strides"] == bi["strides"]:
        return True  # the same immutable bytes, read at the same place
    return bool(np.array_equal(a, b))


class StoreJudge(Judge):
    """The centre's judge over a loaded store and a policy (the node adapter loads the store
    lazily and saves it; this one is for tools, benchmarks and tests). ``result`` holds the last
    verdict."""

    def __init__(self, ids: Sequence[str], policy: ConsentPolicy, store: VerifiedStore):
        self.ids, self.policy, self.store = ids, policy, store
        self.result: CheckResult | None = None
        self._rows: tuple[np.ndarray, np.ndarray] | None = None  # (keys, store.rows(keys))

    def unknown(self, keys: np.ndarray) -> np.ndarray:
        rows = self.store.rows(keys)
        self._rows = (keys, rows)
        return np.flatnonzero((keys != b"") & (rows < 0)).astype(np.int64)

    def decide(self, keys: np.ndarray, positions: np.ndarray, tokens: bytes) -> np.ndarray:
        known = self._rows[1] if self._rows is not None and same_keys(self._rows[0], keys) else None
        self.result = check_keys(self.ids, keys, positions, tokens, self.policy, self.store, known)
        return self.result.accepted
