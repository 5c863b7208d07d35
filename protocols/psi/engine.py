"""Two-party ECDH private set intersection (PSI) on X25519, for aligning enterprises by USCC.

Why: before vertical training the bank and the credit centre must find their common
enterprises without showing each other (or the coordinator that relays their messages) the
rest. See ``docs/protocols/psi.md`` for the protocol, what each party learns and the cost.

Protocol (symmetric, two message rounds, both rounds sent by both parties at the same time)::

    round 1  each party X:  points_X = shuffle_X([ H(x)^kX  for x in X ])          -> peer
    round 2  each party X:  keys_Y   = [ trunc_t(P^kX) for P in points_Y ]          -> peer
                            (sealed with an AEAD key the two parties agreed in round 1)
    finish   each party X:  own keys_X (from the peer, in X's shuffled order)  vs  keys_Y
                            (computed locally)  ->  intersection, sorted by key

``H`` is BLAKE2b-256 (personalisation ``fedcredit-psi-v1``, salted with the run's session)
read as an X25519 u-coordinate, ``P^k`` is ``X25519(k, P)`` (clamping included; X25519
products commute, see the tests). Each party does 2N scalar multiplications, the minimum
for ECDH-PSI where both learn the result. Both parties sort the intersection by the shared
double-blinded key, so they obtain their own row indices in the *same* order without ever
exchanging ids.

Usage (one process; over Flower the messages travel as ``wire.encode(msg)`` bytes)::

    a, b = PsiParty("A", ids_a, session=run_id), PsiParty("B", ids_b, session=run_id)
    m1a, m1b = a.start(), b.start()
    m2a, m2b = a.handle(m1b), b.handle(m1a)
    a.handle(m2b); b.handle(m2a)
    res_a, res_b = a.result(), b.result()   # res_a.rows[i] and res_b.rows[i] are the same firm
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Container, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols.common import wire
from protocols.psi.workers import (
    POINT_BYTES,
    ChunkMapper,
    LowOrderPoint,
    SerialMapper,
    hash_and_blind,
    reblind,
)

log = logging.getLogger(__name__)

PROTOCOL = "fedcredit-psi-v1"
DEFAULT_TRUNCATE = 12  # bytes per round-2 key; collision bound in docs/protocols/psi.md
MIN_TRUNCATE = 8
DEFAULT_CHUNK = 8192  # items per worker task: ~0.3 s of work, small tail at phase ends
MAX_ITEMS = 2**31 - 1
PREPARE_BLOCK = 65536  # ids normalised/validated at a time: bounds working memory
_EMPTY_ROWS = np.zeros(0, dtype=np.int64)
Role = Literal["A", "B"]
Allowed = Callable[[str], bool] | Container[str]
Validator = Callable[[str], bool]

_FIELD_TYPES = {"str": str, "int": int, "bytes": bytes}  # message annotations -> types
STEP1 = "step 1 (blinded points)"
STEP2 = "step 2 (re-blinded keys)"


class PsiProtocolError(ValueError):
    """A PSI message is out of order, malformed, or inconsistent with this run."""


class InvalidIdError(ValueError):
    """Raised in ``strict`` mode for the first invalid id (names party, row and reason)."""


# --------------------------------------------------------------------------- ids and USCC

# GB 32100-2015 check routine, copied (protocols must not import fedcredit); the tests check
# it agrees with fedcredit.data.uscc on random and corrupted codes.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
_USCC_AUTHORITIES = "159Y"
_USCC_VALUE = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(USCC_ALPHABET):
    _USCC_VALUE[ord(_c)] = _i
_IS_AUTHORITY = np.zeros(256, dtype=bool)
_IS_AUTHORITY[[ord(c) for c in _USCC_AUTHORITIES]] = True
_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[[ord(c) for c in "0123456789"]] = True


def normalise_id(value: object) -> str | None:
    """Canonical form of an id (same as ``fedcredit.data.uscc.normalise``); None if not a str."""
    if not isinstance(value, str):
        return None
    return value.strip().upper()


def uscc_error(code: str) -> str | None:
    """Why a *normalised* code is not a valid USCC, or None (per item; for error messages)."""
    if len(code) != 18:
        return f"length {len(code)}, expected 18"
    bad = [ch for ch in code if ch not in USCC_ALPHABET]
    if bad:
        return f"character {bad[0]!r} is not in the USCC alphabet"
    if code[0] not in _USCC_AUTHORITIES:
        return f"unknown registration authority {code[0]!r}"
    if not code[2:8].isdigit():
        return "administrative division code (positions 3-8) must be digits"
    total = sum(USCC_ALPHABET.index(ch) * int(w) for ch, w in zip(code[:17], _USCC_WEIGHTS))
    expected = USCC_ALPHABET[(31 - total % 31) % 31]
    if code[17] != expected:
        return f"check character {code[17]!r} is wrong (expected {expected!r})"
    return None


def uscc_mask(codes: Sequence[str | None]) -> np.ndarray:
    """Vectorised GB 32100 validity of normalised codes (None = invalid); bool array."""
    n = len(codes)
    ok = np.zeros(n, dtype=bool)
    cand = [i for i, c in enumerate(codes) if c is not None and len(c) == 18 and c.isascii()]
    if not cand:
        return ok
    raw = np.array([codes[i] for i in cand], dtype="S18")
    chars = raw.view(np.uint8).reshape(len(cand), 18)
    vals = _USCC_VALUE[chars]  # int16: -1 marks a character outside the alphabet
    good = (vals >= 0).all(axis=1)
    good &= _IS_AUTHORITY[chars[:, 0]]
    good &= _IS_DIGIT[chars[:, 2:8]].all(axis=1)
    total = np.maximum(vals[:, :17], 0) @ _USCC_WEIGHTS  # int64 per code
    good &= vals[:, 17] == (31 - total % 31) % 31
    ok[np.asarray(cand, dtype=np.int64)] = good
    return ok


def session_salt(session: str | bytes) -> bytes:
    """16-byte salt of the run: both parties must use the same session (e.g. the run id)."""
    data = session.encode() if isinstance(session, str) else bytes(session)
    return hashlib.blake2b(data, digest_size=16, person=b"fedcredit-psi-ss").digest()


# --------------------------------------------------------------------------------- messages


@dataclass
class PsiBlinded:
    """Round 1: the sender's ids, hashed, blinded with its secret and shuffled.

    ``points`` is ``count`` concatenated 32-byte X25519 u-coordinates. ``channel_key`` is an
    ephemeral X25519 public key; with the peer's it seals round 2 from the relay.
    """

    protocol: str
    sender: str
    session: str
    count: int
    truncate: int
    channel_key: bytes
    points: bytes


@dataclass
class PsiReblinded:
    """Round 2: the receiver's points re-blinded by the sender, in the receiver's order.

    ``sealed`` is ChaCha20-Poly1305 over ``count * truncate`` bytes (each double-blinded
    point cut to ``truncate`` bytes), so the relay cannot match the two round-2 messages.
    """

    protocol: str
    sender: str
    session: str
    count: int
    truncate: int
    sealed: bytes


@dataclass
class PsiResult:
    """What one party learns. ``rows[i]`` (own input row) and the peer's ``rows[i]`` are the
    same enterprise: both sides list the intersection in the same agreed order."""

    ids: list[str]
    rows: np.ndarray
    size: int
    stats: dict[str, int]
    invalid_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    duplicate_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


# ------------------------------------------------------------------------------------ party


def open_pool(workers: int | None = None, start_method: str | None = None) -> Any:
    """A ``multiprocessing`` pool for the X25519 kernels (caller closes it).

    Use ``start_method="forkserver"`` inside multi-threaded hosts (Flower, gRPC), where
    ``fork`` is unsafe.
    """
    ctx = multiprocessing.get_context(start_method)
    return ctx.Pool(processes=workers or os.cpu_count() or 1)


class PsiParty:
    """One side of the PSI, as a message-level state machine.

    States: ``init`` --start()--> ``sent_blinded`` --handle(PsiBlinded)--> ``sent_keys``
    --handle(PsiReblinded)--> ``done``. Any other message raises :class:`PsiProtocolError`
    naming the step. ``handle`` accepts a message dataclass or its ``wire`` bytes.

    Input hygiene happens here, at the party boundary, before any cryptography: ids are
    normalised (strip, upper case), invalid ones rejected and counted (``rejected_invalid``;
    ``strict=True`` raises instead), duplicates counted and dropped (first row kept), and
    ids refused by ``allowed`` (the consent filter: a set or a predicate) counted.
    """

    def __init__(
        self,
        role: Role,
        ids: Sequence[object],
        *,
        session: str | bytes = "",
        allowed: Allowed | None = None,
        validator: Validator | None = None,
        strict: bool = False,
        truncate: int = DEFAULT_TRUNCATE,
        workers: int | None = None,
        pool: ChunkMapper | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if role not in ("A", "B"):
            raise ValueError(f"PSI role must be 'A' or 'B', got {role!r}")
        if not MIN_TRUNCATE <= truncate <= POINT_BYTES:
            raise ValueError(f"truncate must be in [{MIN_TRUNCATE}, {POINT_BYTES}], got {truncate}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.role: Role = role
        self.peer: Role = "B" if role == "A" else "A"
        self.truncate = truncate
        self.chunk_size = chunk_size
        self._salt = session_salt(session)
        self._session = self._salt.hex()
        self._secret = os.urandom(32)  # fresh per run; X25519 clamps it
        self._channel = X25519PrivateKey.generate()
        self._rng = np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
        self._workers = workers
        self._pool: ChunkMapper | None = pool
        self._own_pool: Any = None
        self.state = "init"
        self._peer_keys: np.ndarray | None = None
        self._peer_count = 0
        self._seal_out: ChaCha20Poly1305 | None = None
        self._seal_in: ChaCha20Poly1305 | None = None
        self._result: PsiResult | None = None
        self._prepare(ids, allowed, validator, strict)

    # -- input boundary ------------------------------------------------------------------

    def _prepare(
        self, ids: Sequence[object], allowed: Allowed | None, validator: Validator | None, strict: bool
    ) -> None:
        """Normalise, validate, deduplicate and consent-filter, block by block.

        Working memory is bounded by the block size; what stays is a fixed-width byte
        array of the kept ids plus their row numbers (~26 bytes per id for USCCs).
        """
        t0 = time.perf_counter()
        n_in = len(ids)
        valid_parts: list[np.ndarray] = []
        row_parts: list[np.ndarray] = []
        invalid_parts: list[np.ndarray] = []
        for lo in range(0, n_in, PREPARE_BLOCK):
            norm = [
                x.strip().upper() if isinstance(x, str) else None  # = normalise_id, inlined
                for x in ids[lo : lo + PREPARE_BLOCK]
            ]
            if validator is None:
                ok = uscc_mask(norm)
            else:
                ok = np.fromiter(
                    (c is not None and "\x00" not in c and bool(validator(c)) for c in norm),
                    dtype=bool,
                    count=len(norm),
                )
            bad = np.flatnonzero(~ok)
            if bad.size and not invalid_parts:
                self._report_invalid(ids, lo + int(bad[0]), norm[int(bad[0])], validator, strict)
            invalid_parts.append(bad + lo)
            good = np.flatnonzero(ok)
            valid = [norm[i].encode() for i in good]  # type: ignore[union-attr]
            if validator is None:
                valid_parts.append(np.array(valid, dtype="S18"))
            else:
                valid_parts.append(np.array(valid, dtype=f"S{max(map(len, valid), default=1)}"))
            row_parts.append(good + lo)
        invalid_rows = np.concatenate(invalid_parts) if invalid_parts else _EMPTY_ROWS
        if invalid_rows.size:
            log.warning("PSI party %s: %d of %d ids invalid; rejected and counted", self.role, invalid_rows.size, n_in)
        width = max((p.dtype.itemsize for p in valid_parts), default=18)
        arr = np.concatenate([p.astype(f"S{width}") for p in valid_parts]) if valid_parts else np.zeros(0, dtype="S18")
        valid_rows = np.concatenate(row_parts) if row_parts else _EMPTY_ROWS
        del valid_parts, row_parts
        uniq, first = np.unique(arr, return_index=True)  # stable: first occurrence wins
        rows = valid_rows[first]
        dup_mask = np.ones(arr.size, dtype=bool)
        dup_mask[first] = False
        duplicate_rows = valid_rows[dup_mask]  # ascending: valid_rows is
        del arr, valid_rows, dup_mask
        refused = 0
        if allowed is not None:
            check = allowed if callable(allowed) else allowed.__contains__
            keep = np.zeros(uniq.size, dtype=bool)
            for lo in range(0, uniq.size, PREPARE_BLOCK):
                block = uniq[lo : lo + PREPARE_BLOCK].tolist()
                keep[lo : lo + len(block)] = [bool(check(u.decode())) for u in block]
            refused = int((~keep).sum())
            uniq, rows = uniq[keep], rows[keep]
        if uniq.size > MAX_ITEMS:
            raise ValueError(f"PSI party {self.role}: {uniq.size} ids exceed {MAX_ITEMS}")
        self._ids = uniq
        self._rows = rows.astype(np.int64)
        self._invalid_rows = invalid_rows.astype(np.int64)
        self._duplicate_rows = duplicate_rows.astype(np.int64)
        self.stats: dict[str, int] = {
            "input": n_in,
            "rejected_invalid": int(invalid_rows.size),
            "duplicates": int(duplicate_rows.size),
            "refused": refused,
            "used": int(uniq.size),
        }
        log.info(
            "PSI party %s: input %d, invalid %d, duplicates %d, refused %d, used %d (%.2fs)",
            self.role,
            n_in,
            invalid_rows.size,
            duplicate_rows.size,
            refused,
            uniq.size,
            time.perf_counter() - t0,
        )

    def _report_invalid(
        self, ids: Sequence[object], row: int, norm: str | None, validator: Validator | None, strict: bool
    ) -> None:
        """Name the first invalid id (row and reason); raise in strict mode."""
        why = "not a string" if norm is None else uscc_error(norm) if validator is None else "rejected by the validator"
        msg = f"PSI party {self.role}: row {row}: invalid id {ids[row]!r}: {why}"
        if strict:
            raise InvalidIdError(msg)
        log.warning("%s", msg)

    # -- workers -------------------------------------------------------------------------

    def _mapper(self) -> ChunkMapper:
        if self._pool is None:
            workers = self._workers or os.cpu_count() or 1
            if workers <= 1:
                self._pool = SerialMapper()
            else:
                self._own_pool = open_pool(workers)
                self._pool = self._own_pool
        return self._pool

    def close(self) -> None:
        """Stop worker processes this party started (idempotent; pools passed in are kept)."""
        if self._own_pool is not None:
            self._own_pool.close()
            self._own_pool.join()
            self._own_pool = None
            self._pool = None

    def __enter__(self) -> PsiParty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, func: Callable[[Any], bytes], tasks: Iterator[Any], step: str) -> bytes:
        try:
            return b"".join(self._mapper().imap(func, tasks))
        except LowOrderPoint as exc:
            raise PsiProtocolError(
                f"PSI party {self.role}, {step}: a point is of low order ({exc}); the peer's message is not honest"
            ) from None

    # -- protocol steps ------------------------------------------------------------------

    def start(self) -> PsiBlinded:
        """Round 1: hash, blind and shuffle own ids (N scalar multiplications)."""
        if self.state != "init":
            raise PsiProtocolError(f"PSI party {self.role}: start() called twice (state {self.state})")
        t0 = time.perf_counter()
        n = self._ids.size
        self._perm = self._rng.permutation(n)
        shuffled = self._ids[self._perm]
        cs = self.chunk_size
        tasks = ((self._secret, self._salt, shuffled[i : i + cs]) for i in range(0, n, cs))
        points = self._run(hash_and_blind, tasks, STEP1)
        self.state = "sent_blinded"
        log.info("PSI party %s: %s, %d points in %.2fs", self.role, STEP1, n, time.perf_counter() - t0)
        return PsiBlinded(
            protocol=PROTOCOL,
            sender=self.role,
            session=self._session,
            count=n,
            truncate=self.truncate,
            channel_key=self._channel.public_key().public_bytes_raw(),
            points=points,
        )

    def handle(self, msg: PsiBlinded | PsiReblinded | bytes) -> PsiReblinded | None:
        """Process the peer's message of the current step; returns the reply (or None)."""
        if self.state == "sent_blinded":
            return self._on_blinded(self._expect(msg, PsiBlinded, STEP1))
        if self.state == "sent_keys":
            self._on_keys(self._expect(msg, PsiReblinded, STEP2))
            return None
        got = msg.__class__.__name__ if not isinstance(msg, bytes) else _type_of(msg)
        if self.state == "init":
            raise PsiProtocolError(f"PSI party {self.role}: got {got} before start()")
        raise PsiProtocolError(f"PSI party {self.role}: got {got} after the protocol finished")

    def _expect(self, msg: Any, cls: type, step: str) -> Any:
        if isinstance(msg, (bytes, bytearray, memoryview)):
            try:
                msg = wire.decode(bytes(msg), cls)
            except wire.WireError as exc:
                raise PsiProtocolError(f"PSI party {self.role}, {step}: {exc}") from None
        if not isinstance(msg, cls):
            raise PsiProtocolError(
                f"PSI party {self.role}, {step}: expected {cls.__name__}, "
                f"got {type(msg).__name__} (message from the wrong step)"
            )
        for f in dataclasses.fields(msg):
            value, want = getattr(msg, f.name), _FIELD_TYPES[f.type]  # type: ignore[index]
            if type(value) is not want:  # exact: a bool is not a count
                raise PsiProtocolError(
                    f"PSI party {self.role}, {step}: field {f.name} is {type(value).__name__}, expected {want.__name__}"
                )
        if msg.protocol != PROTOCOL:
            raise PsiProtocolError(f"PSI party {self.role}, {step}: protocol {msg.protocol!r}, expected {PROTOCOL!r}")
        if msg.sender != self.peer:
            raise PsiProtocolError(
                f"PSI party {self.role}, {step}: message from {msg.sender!r}, expected the peer {self.peer!r}"
            )
        if msg.session != self._session:
            raise PsiProtocolError(
                f"PSI party {self.role}, {step}: session differs (the parties were started for different runs)"
            )
        if msg.truncate != self.truncate:
            raise PsiProtocolError(
                f"PSI party {self.role}, {step}: peer truncates keys to "
                f"{msg.truncate} bytes, this party to {self.truncate}"
            )
        if not isinstance(msg.count, int) or not 0 <= msg.count <= MAX_ITEMS:
            raise PsiProtocolError(f"PSI party {self.role}, {step}: bad count {msg.count!r}")
        return msg

    def _on_blinded(self, msg: PsiBlinded) -> PsiReblinded:
        """Round 2: re-blind the peer's points (N scalar multiplications), seal, return."""
        t0 = time.perf_counter()
        n = msg.count
        if len(msg.points) != n * POINT_BYTES:
            raise PsiProtocolError(
                f"PSI party {self.role}, {STEP1}: {len(msg.points)} bytes of points is not "
                f"count {n} x {POINT_BYTES} bytes"
            )
        if len(msg.channel_key) != POINT_BYTES:
            raise PsiProtocolError(
                f"PSI party {self.role}, {STEP1}: channel key has {len(msg.channel_key)} bytes, expected {POINT_BYTES}"
            )
        try:
            shared = self._channel.exchange(X25519PublicKey.from_public_bytes(msg.channel_key))
        except ValueError:
            raise PsiProtocolError(f"PSI party {self.role}, {STEP1}: channel key is a low-order point") from None
        self._seal_out = ChaCha20Poly1305(self._derive(shared, self.role))
        self._seal_in = ChaCha20Poly1305(self._derive(shared, self.peer))
        step = 32 * self.chunk_size
        pts = msg.points
        tasks = ((self._secret, pts[o : o + step], self.truncate) for o in range(0, len(pts), step))
        keys = self._run(reblind, tasks, STEP1)
        self._peer_count = n
        self._peer_keys = np.frombuffer(keys, dtype=np.uint8).reshape(n, self.truncate)
        self.stats["peer_used"] = n
        self.state = "sent_keys"
        sealed = self._seal_out.encrypt(bytes(12), keys, self._aad(self.role, n))
        log.info("PSI party %s: %s for %d peer points in %.2fs", self.role, STEP2, n, time.perf_counter() - t0)
        return PsiReblinded(
            protocol=PROTOCOL, sender=self.role, session=self._session, count=n, truncate=self.truncate, sealed=sealed
        )

    def _derive(self, shared: bytes, sender: str) -> bytes:
        """Per-direction AEAD key: used once, so a fixed nonce is safe."""
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=self._salt, info=f"{PROTOCOL} seal {sender}".encode()
        ).derive(shared)

    def _aad(self, sender: str, count: int) -> bytes:
        return f"{PROTOCOL}|{sender}|{self._session}|{count}|{self.truncate}".encode()

    def _on_keys(self, msg: PsiReblinded) -> None:
        """Finish: match own double-blinded keys against the peer's, in the agreed order."""
        t0 = time.perf_counter()
        n = self._ids.size
        if msg.count != n:
            raise PsiProtocolError(f"PSI party {self.role}, {STEP2}: count {msg.count}, but this party sent {n} points")
        if len(msg.sealed) != n * self.truncate + 16:
            raise PsiProtocolError(
                f"PSI party {self.role}, {STEP2}: sealed payload has {len(msg.sealed)} bytes, "
                f"expected count {n} x {self.truncate} + 16"
            )
        assert self._seal_in is not None and self._peer_keys is not None
        try:
            raw = self._seal_in.decrypt(bytes(12), msg.sealed, self._aad(self.peer, n))
        except InvalidTag:
            raise PsiProtocolError(
                f"PSI party {self.role}, {STEP2}: sealed keys fail authentication (tampered, or from another run)"
            ) from None
        own = _key_columns(np.frombuffer(raw, dtype=np.uint8).reshape(n, self.truncate))
        peer = _key_columns(self._peer_keys)
        order = _common_in_key_order(own, peer)
        if order.size > 1 and (np.diff(own[order], axis=0) == 0).all(axis=1).any():
            raise PsiProtocolError(
                f"PSI party {self.role}, {STEP2}: two intersection items "
                f"share a {self.truncate}-byte key; rerun with a larger "
                "truncate"
            )
        items = self._perm[order]
        self.stats["intersection"] = int(items.size)
        self._result = PsiResult(
            ids=[b.decode() for b in self._ids[items].tolist()],
            rows=self._rows[items],
            size=int(items.size),
            stats=dict(self.stats),
            invalid_rows=self._invalid_rows,
            duplicate_rows=self._duplicate_rows,
        )
        self._peer_keys = None
        self.state = "done"
        self.close()
        log.info("PSI party %s: intersection %d in %.2fs", self.role, items.size, time.perf_counter() - t0)

    def result(self) -> PsiResult:
        if self._result is None:
            raise PsiProtocolError(f"PSI party {self.role}: no result yet (state {self.state})")
        return self._result


# --------------------------------------------------------------------------- set matching


def _type_of(data: bytes) -> str:
    try:
        return wire.message_type(data)
    except wire.WireError:
        return "undecodable bytes"


def _key_columns(keys: np.ndarray) -> np.ndarray:
    """(n, t) bytes -> (n, ceil(t/8)) uint64 whose row order is the bytes' lexical order."""
    n, t = keys.shape
    width = -(-t // 8) * 8
    padded = np.zeros((n, width), dtype=np.uint8)
    padded[:, :t] = keys
    return padded.view(">u8").astype(np.uint64)


def _sorted_by_key(keys: np.ndarray) -> np.ndarray:
    """Row order of ``keys`` ((n, k) uint64) by the full key; fast path sorts one column."""
    order = np.argsort(keys[:, 0])  # SIMD quicksort; exact unless first columns tie
    first = keys[order, 0]
    if keys.shape[1] > 1 and first.size > 1 and (first[1:] == first[:-1]).any():
        order = np.lexsort(keys.T[::-1])  # rare (2^-64 per pair): full lexical order
    return order


def _common_in_key_order(own: np.ndarray, peer: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``own`` that occur in ``peer``, sorted by key.

    Sorting both sides first turns the membership test into cache-friendly merges (random
    binary searches over 1M keys cost ~5x more). The result is sorted by the full key, the
    order both parties agree on.
    """
    if own.shape[0] == 0 or peer.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    oi = _sorted_by_key(own)
    os_ = own[oi]
    ps = peer[np.argsort(peer[:, 0])]
    lo = np.searchsorted(ps[:, 0], os_[:, 0], side="left")
    hi = np.searchsorted(ps[:, 0], os_[:, 0], side="right")
    hit = np.zeros(oi.size, dtype=bool)
    single = np.flatnonzero(hi - lo == 1)
    hit[single] = (ps[lo[single]] == os_[single]).all(axis=1)
    for i in np.flatnonzero(hi - lo > 1):  # first 8 bytes collide: rare, compare in full
        hit[i] = bool((ps[lo[i] : hi[i]] == os_[i]).all(axis=1).any())
    return oi[hit].astype(np.int64)


# ------------------------------------------------------------------------------ local run


def run_local(
    ids_a: Sequence[object],
    ids_b: Sequence[object],
    *,
    session: str | bytes = "local",
    allowed_a: Allowed | None = None,
    allowed_b: Allowed | None = None,
    validator: Validator | None = None,
    truncate: int = DEFAULT_TRUNCATE,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    transcript: list[tuple[str, str, bytes]] | None = None,
) -> tuple[PsiResult, PsiResult]:
    """Run both parties in this process tree, through the wire encoding, as in deployment.

    Each party runs in its own thread and the two exchange ``wire`` bytes through queues, so
    (as on two machines) one party's Python work overlaps the other's scalar
    multiplications and neither waits at the end of the other's phase. Both share one
    worker pool of ``workers`` processes. ``transcript``, if given, receives
    ``(sender, message type, bytes)`` for every message: exactly what a relay would see.
    """
    workers = workers or os.cpu_count() or 1
    pool: Any = open_pool(workers) if workers > 1 else SerialMapper()
    to_a: queue.Queue[bytes | None] = queue.Queue()
    to_b: queue.Queue[bytes | None] = queue.Queue()
    common: dict[str, Any] = dict(
        session=session, validator=validator, truncate=truncate, pool=pool, chunk_size=chunk_size
    )

    def relay(msg: Any, outbox: queue.Queue[bytes | None]) -> None:
        data = wire.encode(msg)
        if transcript is not None:
            transcript.append((msg.sender, type(msg).__name__, data))
        outbox.put(data)

    def drive(
        role: Role,
        ids: Sequence[object],
        allowed: Allowed | None,
        inbox: queue.Queue[bytes | None],
        outbox: queue.Queue[bytes | None],
    ) -> PsiResult | None:
        try:
            party = PsiParty(role, ids, allowed=allowed, **common)
            relay(party.start(), outbox)
            for _ in range(2):
                data = inbox.get()
                if data is None:  # the peer failed; its exception is reported instead
                    return None
                reply = party.handle(data)
                if reply is not None:
                    relay(reply, outbox)
            return party.result()
        except BaseException:
            outbox.put(None)
            raise

    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="psi") as ex:
            fa = ex.submit(drive, "A", ids_a, allowed_a, to_a, to_b)
            fb = ex.submit(drive, "B", ids_b, allowed_b, to_b, to_a)
            for fut in (fa, fb):
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            res_a, res_b = fa.result(), fb.result()
        assert res_a is not None and res_b is not None
        return res_a, res_b
    finally:
        if not isinstance(pool, SerialMapper):
            pool.close()
            pool.join()


__all__ = [
    "PROTOCOL",
    "DEFAULT_TRUNCATE",
    "PsiProtocolError",
    "InvalidIdError",
    "PsiBlinded",
    "PsiReblinded",
    "PsiResult",
    "PsiParty",
    "run_local",
    "open_pool",
    "uscc_mask",
    "uscc_error",
    "normalise_id",
    "session_salt",
]
