"""The per-run consent check: a store of verified tokens, then vectorised claim checks.

Why a store: one Ed25519 verification costs ~60-160 us, so 1M tokens take one to three minutes
per run. A token's *signature* never changes, though; only the run-dependent checks (audience,
purpose, categories, validity window, revocation) do. So a party verifies each token's
signature once, the first time it sees it, and files its claims under the SHA-256 of the exact
token bytes in a :class:`VerifiedStore`. A later run hashes each presented token and looks it up:

* a token whose bytes differ in any way (forged, altered claims, another signature) has another
  digest (SHA-256 collision resistance), is not found, and is verified afresh, so the store never
  vouches for bytes it did not verify;
* the store on disk is bound by an HMAC-SHA256 under a node-local secret key, so nobody without
  that key (the bank, the coordinator, another tenant of the disk) can plant entries; a store
  whose MAC fails is refused, naming the file;
* revocation, validity and scope are re-evaluated every run on the stored claims, as numpy
  column operations, so they cost microseconds per thousand tokens.

Ids of refused enterprises stay on the node (:attr:`CheckResult.reasons`); only counts by reason
and issuer go to the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.consent.tokens import Grant, IssuerKey, RevocationList, TokenRejected, verify_token

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
_STORE_VERSION = "fedcredit-consent-store/3"


class StoreError(ValueError):
    """A verified-token store that cannot be trusted (bad MAC, wrong format); names the file."""


_TEXT = ("iss", "aud", "purpose", "cats")  # few distinct values: stored as codes into tables
_INTS = ("nbf", "exp", "iat")


def _joined(values: tuple[str, ...]) -> str:
    return "|" + "|".join(values) + "|"


class VerifiedStore:
    """Token SHA-256 -> verified claims, as numpy columns sorted by digest.

    Lookups are one ``searchsorted`` over the digest column; issuer, audience, purpose and
    categories are codes into small tables, so a run's checks on them are evaluated once per
    distinct value, then gathered.
    """

    def __init__(self) -> None:
        self.cols: dict[str, np.ndarray] = {
            "digest": np.zeros(0, dtype="S32"),
            "sub": np.zeros(0, dtype="S18"),
            "jti": np.zeros(0, dtype="S1"),
            **{k: np.zeros(0, dtype=np.int32) for k in _TEXT},
            **{k: np.zeros(0, dtype=np.int64) for k in _INTS},
        }
        self.tables: dict[str, list[str]] = {k: [] for k in _TEXT}
        # Tokens whose signature failed, under the trusted-key set it failed under: a forged
        # token presented again is refused without another Ed25519 verification.
        self.rejected: dict[str, np.ndarray] = {
            "digest": np.zeros(0, dtype="S32"),
            "reason": np.zeros(0, dtype="S16"),
            "keys": np.zeros(0, dtype="S32"),
        }

    def __len__(self) -> int:
        return int(self.cols["digest"].size)

    @staticmethod
    def digest(token: str | bytes) -> bytes:
        return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()

    @staticmethod
    def digests(tokens: Sequence[str | bytes]) -> np.ndarray:
        sha = hashlib.sha256
        return np.array([sha(t if isinstance(t, bytes) else t.encode()).digest() for t in tokens], dtype="S32")

    def rows(self, digests: np.ndarray) -> np.ndarray:
        """Store row per digest, -1 where the token was never verified here."""
        col = self.cols["digest"]
        if col.size == 0:
            return np.full(digests.size, -1, dtype=np.int64)
        idx = np.searchsorted(col, digests)
        idx = np.minimum(idx, col.size - 1)
        return np.where(col[idx] == digests, idx, -1).astype(np.int64)

    @staticmethod
    def keyset(issuers: Mapping[str, IssuerKey]) -> bytes:
        """A digest of the trusted issuer keys: a cached refusal holds only under the same set."""
        return hashlib.sha256("|".join(sorted(f"{n}={k.fingerprint}" for n, k in issuers.items())).encode()).digest()

    def refused(self, digests: np.ndarray, issuers: Mapping[str, IssuerKey]) -> np.ndarray:
        """Cached refusal reason per digest (b'' where none holds for these issuer keys)."""
        col = self.rejected["digest"]
        out = np.zeros(digests.size, dtype="S16")
        if col.size == 0:
            return out
        idx = np.minimum(np.searchsorted(col, digests), col.size - 1)
        hit = (col[idx] == digests) & (self.rejected["keys"][idx] == self.keyset(issuers))
        out[hit] = self.rejected["reason"][idx[hit]]
        return out

    def add_rejected(self, digests: np.ndarray, reasons: list[str], issuers: Mapping[str, IssuerKey]) -> None:
        if digests.size == 0:
            return
        keep = np.isin(np.arange(digests.size), np.unique(digests, return_index=True)[1])
        keep &= ~np.isin(digests, self.rejected["digest"])
        new = {
            "digest": digests[keep],
            "reason": np.array([r.encode() for r in reasons], dtype="S16")[keep],
            "keys": np.full(int(keep.sum()), self.keyset(issuers), dtype="S32"),
        }
        merged = {k: np.concatenate([self.rejected[k], new[k]]) for k in self.rejected}
        order = np.argsort(merged["digest"], kind="stable")
        self.rejected = {k: v[order] for k, v in merged.items()}

    def _code(self, name: str, value: str) -> int:
        table = self.tables[name]
        try:
            return table.index(value)
        except ValueError:
            table.append(value)
            return len(table) - 1

    def add_many(
        self, tokens: Sequence[str | bytes], grants: Sequence[Grant], issuers: Mapping[str, IssuerKey]
    ) -> None:
        """File ``grants`` (which the caller verified from ``tokens`` under ``issuers``) under the
        tokens' digests. The issuer is filed as name#key-fingerprint, so a grant verified under one
        key does not count once that issuer name is bound to another key."""
        if not grants:
            return
        d = self.digests(tokens)
        keep = self.rows(d) < 0
        _, first = np.unique(d, return_index=True)
        keep &= np.isin(np.arange(d.size), first)
        gs = [g for g, k in zip(grants, keep.tolist(), strict=True) if k]
        if not gs:
            return
        new = {
            "digest": d[keep],
            "sub": np.array([g.sub.encode() for g in gs], dtype="S18"),
            "jti": np.array([g.jti.encode() for g in gs], dtype="S"),
            "iss": np.array([self._code("iss", f"{g.iss}#{issuers[g.iss].fingerprint}") for g in gs], dtype=np.int32),
            "aud": np.array([self._code("aud", _joined(g.aud)) for g in gs], dtype=np.int32),
            "purpose": np.array([self._code("purpose", g.purpose) for g in gs], dtype=np.int32),
            "cats": np.array([self._code("cats", _joined(g.cats)) for g in gs], dtype=np.int32),
            "nbf": np.array([g.nbf for g in gs], dtype=np.int64),
            "exp": np.array([g.exp for g in gs], dtype=np.int64),
            "iat": np.array([g.iat for g in gs], dtype=np.int64),
        }
        merged = {k: np.concatenate([self.cols[k], new[k]]) for k in self.cols}
        order = np.argsort(merged["digest"], kind="stable")
        self.cols = {k: v[order] for k, v in merged.items()}

    def verify_and_add(
        self, tokens: Sequence[str | bytes], issuers: Mapping[str, IssuerKey]
    ) -> tuple[int, Counter[str]]:
        """Verify tokens not yet in the store and add the good ones: (added, failures by reason)."""
        rows = self.rows(self.digests(tokens))
        good_t: list[str | bytes] = []
        good_g: list[Grant] = []
        failed = Counter[str]()
        bad_d: list[str | bytes] = []
        bad_r: list[str] = []
        for i in np.flatnonzero(rows < 0):
            try:
                good_g.append(verify_token(tokens[int(i)], issuers))
                good_t.append(tokens[int(i)])
            except TokenRejected as exc:
                failed[exc.reason] += 1
                bad_d.append(tokens[int(i)])
                bad_r.append(exc.reason)
        self.add_rejected(self.digests(bad_d), bad_r, issuers)
        before = len(self)
        self.add_many(good_t, good_g, issuers)
        return len(self) - before, failed

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], key: bytes) -> Path:
        """Write the store and its HMAC (``path`` + ``.mac``); the key never leaves the node."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        meta = json.dumps({"version": _STORE_VERSION, "tables": self.tables})
        arrays: dict[str, Any] = {"meta": np.array(meta), **self.cols}
        arrays.update({f"rejected_{k}": v for k, v in self.rejected.items()})
        np.savez(buf, **arrays)
        raw = buf.getvalue()
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, p)
        p.with_suffix(p.suffix + ".mac").write_text(hmac.new(key, raw, hashlib.sha256).hexdigest())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], key: bytes) -> VerifiedStore:
        """The store at ``path``, or an empty one if there is none; a bad MAC is refused."""
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
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            if meta.get("version") != _STORE_VERSION:
                raise StoreError(f"{p}: not a {_STORE_VERSION} store")
            store.tables = {k: list(meta["tables"][k]) for k in _TEXT}
            store.cols = {k: z[k] for k in store.cols}
            store.rejected = {k: z[f"rejected_{k}"] for k in store.rejected}
        return store


def store_key(path: str | os.PathLike[str]) -> bytes:
    """The node-local HMAC key of the store, created (owner-only) on first use."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
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
    """Per position: accepted or the refusal reason. ``reasons`` stays on the node."""

    accepted: np.ndarray  # bool
    reasons: np.ndarray = field(repr=False)  # str, '' where accepted
    issuers: np.ndarray = field(repr=False)  # str, the token's issuer ('' if unknown)
    policy: ConsentPolicy
    verified_now: int = 0  # tokens whose signature was checked in this run (not yet in the store)

    def counts(self) -> dict[str, int]:
        r = self.reasons[~self.accepted]
        return {k: int(v) for k, v in sorted(Counter(r.tolist()).items())}

    def by_issuer(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for iss in sorted(set(self.issuers.tolist())):
            m = self.issuers == iss
            out[iss or "(unknown)"] = {
                "accepted": int((m & self.accepted).sum()),
                "refused": int((m & ~self.accepted).sum()),
            }
        return out

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
    """Decide, for each position, whether ``tokens[i]`` authorises using ``ids[i]``'s data.

    An empty token means the bank holds none for that enterprise (``no_token``). Signatures are
    verified only for tokens not yet in ``store`` (and added to it); every other check runs on
    the store's columns.
    """
    n = len(ids)
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for {n} ids")
    reasons = np.full(n, "", dtype=object)
    empty = np.fromiter((len(t) == 0 for t in tokens), dtype=bool, count=n)
    reasons[empty] = "no_token"
    digests = VerifiedStore.digests(tokens)
    rows = store.rows(digests)
    known_bad = store.refused(digests, policy.issuers)
    cached = (rows < 0) & ~empty & (known_bad != b"")
    reasons[cached] = [r.decode() for r in known_bad[cached]]
    fresh = np.flatnonzero((rows < 0) & ~empty & ~cached)
    good_t: list[str | bytes] = []
    good_g: list[Grant] = []
    bad_i: list[int] = []
    for i in fresh:
        try:
            good_g.append(verify_token(tokens[int(i)], policy.issuers))
            good_t.append(tokens[int(i)])
        except TokenRejected as exc:
            reasons[i] = exc.reason
            bad_i.append(int(i))
    store.add_rejected(digests[bad_i], [reasons[i] for i in bad_i], policy.issuers)
    if good_g:
        store.add_many(good_t, good_g, policy.issuers)
        rows = store.rows(digests)
    have = rows >= 0
    issuers = np.full(n, "", dtype=object)
    if have.any():
        c, t = store.cols, store.tables
        r = rows[have]

        def per_code(name: str, ok: Callable[[str], bool]) -> np.ndarray:
            table = np.array([ok(v) for v in t[name]] or [False], dtype=bool)
            return table[c[name][r]]

        names = [v.split("#")[0] for v in t["iss"]]
        issuers[have] = np.array(names or [""], dtype=object)[c["iss"][r]]
        trusted = {f"{n}#{k.fingerprint}" for n, k in policy.issuers.items()}
        revoked = np.zeros(r.size, dtype=bool)
        for name, rl in policy.revocations.items():
            codes = [i for i, v in enumerate(names) if v == name]
            if codes and rl.revoked:
                revoked |= np.isin(c["iss"][r], codes) & np.isin(c["jti"][r], np.array(sorted(rl.revoked), dtype="S"))
        want_ids = np.array([u.encode() for u in ids], dtype="S18")[have]
        checks = [
            ("unknown_issuer", ~per_code("iss", lambda v: v in trusted)),
            ("wrong_subject", c["sub"][r] != want_ids),
            ("wrong_audience", ~per_code("aud", lambda v: all(f"|{a}|" in v for a in policy.audience))),
            ("wrong_purpose", ~per_code("purpose", lambda v: v == policy.purpose)),
            ("out_of_scope", ~per_code("cats", lambda v: all(f"|{x}|" in v for x in policy.categories))),
            ("not_yet_valid", c["nbf"][r] > policy.at),
            ("expired", c["exp"][r] <= policy.at),
            ("revoked", revoked),
        ]
        sub_reasons = np.full(r.size, "", dtype=object)
        for reason, bad in reversed(checks):  # the earliest check wins
            sub_reasons[bad] = reason
        reasons[have] = sub_reasons
    accepted = reasons == ""
    return CheckResult(np.asarray(accepted, dtype=bool), reasons, issuers, policy, len(good_g) + len(bad_i))
