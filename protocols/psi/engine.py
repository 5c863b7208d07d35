"""Two-party ECDH private set intersection (PSI) on X25519, for aligning enterprises by USCC.

Why: before vertical training the bank and the credit centre must find their common
enterprises without showing each other (or the coordinator that relays their messages) the
rest. See ``docs/protocols/psi.md`` for the protocol, what each party learns and the cost.

Protocol (symmetric, two message rounds, both rounds sent by both parties at the same time)::

    round 1  each party X:  points_X = shuffle_X([ H(x)^kX  for x in X ])          -> peer
    round 2  each party X:  keys_Y   = [ trunc_t(P^kX) for P in points_Y ]          -> peer
                            (sealed with the channel recipe, keys agreed in round 1)
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
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import numpy as np

from protocols.common import wire
from protocols.common.channel import Channel, ChannelError, new_private_key, public_key_of
from protocols.psi.kernels import (
    POINT_BYTES,
    ChunkMapper,
    LowOrderPoint,
    SerialMapper,
    hash_and_blind,
    open_pool,
    reblind,
    session_salt,
)
from protocols.psi.matching import common_in_key_order, has_key_collision, key_columns
from protocols.psi.messages import PROTOCOL, STEP1, STEP2, PsiBlinded, PsiReblinded
from protocols.psi.prepare import MAX_ITEMS, Allowed, Validator, prepare_ids

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 8192  # items per worker task: ~0.3 s of work, small tail at phase ends
DEFAULT_TRUNCATE = 12  # bytes per round-2 key; collision bound in docs/protocols/psi.md
MIN_TRUNCATE = 8
Role = Literal["A", "B"]
M = TypeVar("M")
_FIELD_TYPES = {"str": str, "int": int, "bytes": bytes}  # message annotations -> types


class PsiProtocolError(ValueError):
    """A PSI message is out of order, malformed, or inconsistent with this run."""


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


@dataclass
class PsiCheckpoint:
    """What a :class:`PsiParty` needs to continue in another process (node-local: its secrets).

    The ids are not in it: the party is rebuilt from the same ids, then :meth:`PsiParty.resume`.
    """

    state: str
    secret: bytes
    channel: bytes  # this party's X25519 channel private key
    peer_channel: bytes  # the peer's channel public key, once received
    perm: np.ndarray
    peer_count: int
    peer_keys: bytes
    result_items: np.ndarray  # positions in the prepared ids of the intersection, agreed order
    stats: dict


class PsiParty:
    """One side of the PSI, as a message-level state machine.

    States: ``init`` --start()--> ``sent_blinded`` --handle(PsiBlinded)--> ``sent_keys``
    --handle(PsiReblinded)--> ``done``. Any other message raises :class:`PsiProtocolError`
    naming the step. ``handle`` accepts a message dataclass or its ``wire`` bytes.

    Input hygiene happens at construction (:func:`protocols.psi.prepare.prepare_ids`): ids
    normalised, invalid ones rejected and counted (``strict=True`` raises instead),
    duplicates dropped, ids refused by ``allowed`` (the consent filter) counted.
    """

    def __init__(
        self,
        role: str,
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
        self.role: Role = cast(Role, role)
        self.peer: Role = "B" if role == "A" else "A"
        self.truncate = truncate
        self.chunk_size = chunk_size
        self._salt = session_salt(session)
        self._session = self._salt.hex()
        self._secret = os.urandom(32)  # fresh per run; X25519 clamps it
        self._channel = new_private_key()
        self._peer_channel = b""
        self._link: Channel | None = None
        self._rng = np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
        self._workers = workers
        self._pool: ChunkMapper | None = pool
        self._own_pool: Any = None
        self.state = "init"
        self._perm = np.zeros(0, dtype=np.int64)
        self._peer_keys: np.ndarray | None = None
        self._peer_count = 0
        self._result: PsiResult | None = None
        self._result_items = np.zeros(0, dtype=np.int64)
        prepared = prepare_ids(f"PSI party {role}", ids, allowed=allowed, validator=validator, strict=strict)
        self._ids, self._rows = prepared.ids, prepared.rows
        self._invalid_rows, self._duplicate_rows = prepared.invalid_rows, prepared.duplicate_rows
        self.stats: dict[str, int] = prepared.stats

    def ids_digest(self) -> bytes:
        """The prepared ids and their rows, as bytes to digest (a restore must see the same)."""
        return self._ids.tobytes() + self._rows.tobytes()

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
            raise self._error(step, f"a point is of low order ({exc}); the peer's message is not honest") from None

    def _error(self, step: str, what: str) -> PsiProtocolError:
        return PsiProtocolError(f"PSI party {self.role}, {step}: {what}")

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
            channel_key=public_key_of(self._channel),
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

    def _expect(self, msg: object, cls: type[M], step: str) -> M:
        """``msg`` (or its wire bytes) as the peer's ``cls`` message of this run, or a named error."""
        if isinstance(msg, (bytes, bytearray, memoryview)):
            try:
                msg = wire.decode(bytes(msg), cls)
            except wire.WireError as exc:
                raise self._error(step, str(exc)) from None
        if not isinstance(msg, cls):
            raise self._error(step, f"expected {cls.__name__}, got {type(msg).__name__} (message from the wrong step)")
        m: Any = msg
        for f in dataclasses.fields(m):
            value, want = getattr(m, f.name), _FIELD_TYPES[str(f.type)]
            if type(value) is not want:  # exact: a bool is not a count
                raise self._error(step, f"field {f.name} is {type(value).__name__}, expected {want.__name__}")
        if m.protocol != PROTOCOL:
            raise self._error(step, f"protocol {m.protocol!r}, expected {PROTOCOL!r}")
        if m.sender != self.peer:
            raise self._error(step, f"message from {m.sender!r}, expected the peer {self.peer!r}")
        if m.session != self._session:
            raise self._error(step, "session differs (the parties were started for different runs)")
        if m.truncate != self.truncate:
            raise self._error(step, f"peer truncates keys to {m.truncate} bytes, this party to {self.truncate}")
        if not 0 <= m.count <= MAX_ITEMS:
            raise self._error(step, f"bad count {m.count!r}")
        return msg

    def _channel_to(self, peer_channel: bytes) -> Channel:
        """The sealed channel to the peer for round 2 (both directions)."""
        try:
            return Channel(
                self._channel, peer_channel, protocol=PROTOCOL, session=self._session, me=self.role, peer=self.peer
            )
        except ChannelError as exc:
            raise self._error(STEP1, f"channel key refused: {exc}") from None

    def _on_blinded(self, msg: PsiBlinded) -> PsiReblinded:
        """Round 2: re-blind the peer's points (N scalar multiplications), seal, return."""
        t0 = time.perf_counter()
        n = msg.count
        if len(msg.points) != n * POINT_BYTES:
            raise self._error(STEP1, f"{len(msg.points)} bytes of points is not count {n} x {POINT_BYTES} bytes")
        link = self._channel_to(msg.channel_key)
        step = 32 * self.chunk_size
        pts = msg.points
        tasks = ((self._secret, pts[o : o + step], self.truncate) for o in range(0, len(pts), step))
        keys = self._run(reblind, tasks, STEP1)
        self._link, self._peer_channel = link, msg.channel_key
        self._peer_count = n
        self._peer_keys = np.frombuffer(keys, dtype=np.uint8).reshape(n, self.truncate)
        self.stats["peer_used"] = n
        self.state = "sent_keys"
        sealed = link.seal(keys, message="PsiReblinded", count=n, truncate=self.truncate)
        log.info("PSI party %s: %s for %d peer points in %.2fs", self.role, STEP2, n, time.perf_counter() - t0)
        return PsiReblinded(
            protocol=PROTOCOL, sender=self.role, session=self._session, count=n, truncate=self.truncate, sealed=sealed
        )

    def _on_keys(self, msg: PsiReblinded) -> None:
        """Finish: match own double-blinded keys against the peer's, in the agreed order."""
        t0 = time.perf_counter()
        n = self._ids.size
        if msg.count != n:
            raise self._error(STEP2, f"count {msg.count}, but this party sent {n} points")
        if len(msg.sealed) != n * self.truncate + 16:
            raise self._error(
                STEP2, f"sealed payload has {len(msg.sealed)} bytes, expected count {n} x {self.truncate} + 16"
            )
        assert self._link is not None and self._peer_keys is not None
        try:
            raw = self._link.open(msg.sealed, message="PsiReblinded", count=n, truncate=self.truncate)
        except ChannelError:
            raise self._error(STEP2, "sealed keys fail authentication (tampered, or from another run)") from None
        own = key_columns(np.frombuffer(raw, dtype=np.uint8).reshape(n, self.truncate))
        order = common_in_key_order(own, key_columns(self._peer_keys))
        if has_key_collision(own, order):
            raise self._error(
                STEP2, f"two intersection items share a {self.truncate}-byte key; rerun with a larger truncate"
            )
        items = self._perm[order]
        self.stats["intersection"] = int(items.size)
        self._result, self._result_items = self._result_of(items), items
        self._peer_keys = None
        self.state = "done"
        self.close()
        log.info("PSI party %s: intersection %d in %.2fs", self.role, items.size, time.perf_counter() - t0)

    def _result_of(self, items: np.ndarray) -> PsiResult:
        return PsiResult(
            ids=[b.decode() for b in self._ids[items].tolist()],
            rows=self._rows[items],
            size=int(items.size),
            stats=dict(self.stats),
            invalid_rows=self._invalid_rows,
            duplicate_rows=self._duplicate_rows,
        )

    def result(self) -> PsiResult:
        if self._result is None:
            raise PsiProtocolError(f"PSI party {self.role}: no result yet (state {self.state})")
        return self._result

    # -- restart ---------------------------------------------------------------------------

    def checkpoint(self) -> PsiCheckpoint:
        """Everything :meth:`resume` needs; holds this party's secrets (keep it node-local)."""
        peer_keys = self._peer_keys
        return PsiCheckpoint(
            state=self.state,
            secret=self._secret,
            channel=self._channel,
            peer_channel=self._peer_channel,
            perm=np.asarray(self._perm, dtype=np.int64),
            peer_count=int(self._peer_count),
            peer_keys=b"" if peer_keys is None else np.ascontiguousarray(peer_keys).tobytes(),
            result_items=self._result_items,
            stats=dict(self.stats),
        )

    def resume(self, cp: PsiCheckpoint) -> None:
        """Continue from :meth:`checkpoint` (this party must be built from the same ids)."""
        self.state, self._secret, self._channel = cp.state, cp.secret, cp.channel
        self._perm = np.asarray(cp.perm, dtype=np.int64)
        self.stats = dict(cp.stats)
        self._peer_channel, self._peer_count = cp.peer_channel, int(cp.peer_count)
        if cp.peer_channel:
            self._link = self._channel_to(cp.peer_channel)
        if cp.peer_keys:
            self._peer_keys = np.frombuffer(cp.peer_keys, dtype=np.uint8).reshape(cp.peer_count, self.truncate).copy()
        if cp.state == "done":
            self._result_items = np.asarray(cp.result_items, dtype=np.int64)
            self._result = self._result_of(self._result_items)


def _type_of(data: bytes) -> str:
    try:
        return wire.message_type(data)
    except wire.WireError:
        return "undecodable bytes"
