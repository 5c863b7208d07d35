"""The centre's side of unbalanced PSI: prepare once per key period, answer each run cheaply.

Why: a credit centre of millions of firms serves dozens of banks. Balanced ECDH-PSI re-blinds
the centre's whole table in every run; here the centre hashes and blinds it once per key
period (``|C|`` X25519 multiplications), hands each bank a sealed copy of the truncated tokens
of the firms that bank may match, and per run only multiplies the bank's blinded points by its
key (``|B|`` multiplications). See ``docs/protocols/psi.md`` ("Unbalanced PSI") for what this
changes: the centre's key is reused across runs and banks within a period, so each bank holds
an offline membership test for the ids it gets evaluated, bounded by :attr:`query_budget`.

State isolation: :class:`PreparedCentre` (key, tokens, per-bank grants and budgets) is the only
state shared across runs; each run is a :class:`CentreRun` with its own channel key and query.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from protocols.common.channel import Channel, ChannelError, new_private_key, public_key_of
from protocols.psi.engine import DEFAULT_CHUNK, DEFAULT_TRUNCATE, MIN_TRUNCATE, PsiProtocolError, PsiResult
from protocols.psi.kernels import POINT_BYTES, ChunkMapper, SerialMapper, hash_and_blind, reblind, session_salt
from protocols.psi.prepare import Allowed, Validator, prepare_ids
from protocols.psi.unbalanced.common import expect, run_chunks
from protocols.psi.unbalanced.messages import (
    PROTOCOL,
    STEP_MATCH,
    STEP_QUERY,
    UbCache,
    UbEvaluated,
    UbMatches,
    UbQuery,
)

log = logging.getLogger(__name__)
CENTRE = "centre"
DEFAULT_QUERY_BUDGET = 2_000_000  # ids a bank may have evaluated per key period


@dataclass
class _Grant:
    """What one bank was given in this period: its cache positions and how much it queried."""

    positions: np.ndarray  # cache position -> position in the centre's shuffled token table
    queried: int = 0
    runs: set[str] = field(default_factory=set)
    cache: str = ""  # cache_digest of the tokens handed over


@dataclass
class TableRecord:
    """A :class:`PreparedCentre` without its grants, for the centre's node store (holds ``k_C``:
    node-local only, never on the wire). ``ids`` are the prepared ids as fixed-width bytes rows."""

    period: str
    truncate: int
    query_budget: int
    secret: bytes
    ids: np.ndarray  # uint8 (n, width)
    rows: np.ndarray  # int64: the centre's table row of each prepared id
    perm: np.ndarray  # int64: token position -> prepared index
    tokens: np.ndarray  # uint8 (n, truncate)
    stats: str  # JSON of the preparation's counts
    prepare_seconds: float


@dataclass
class GrantRecord:
    """One bank's grant in one period, for the centre's node store."""

    bank: str
    period: str
    positions: np.ndarray  # int64: cache position -> token position
    queried: int
    runs: list[str]
    cache: str  # cache_digest of the tokens handed over


@dataclass
class CentreRunState:
    """What a :class:`CentreRun` must keep between two relay steps (node-local: a channel key)."""

    bank: str
    session: str
    state: str
    channel: bytes  # the run's channel private key
    peer_key: bytes  # the bank's channel public key (b"" before the query)
    query_count: int
    grant_digest: str  # the grant the run was evaluated against (a replaced cache is refused)


def cache_digest(tokens: np.ndarray) -> str:
    """SHA-256 of a cache's tokens in cache order: both sides compute it (the bank from what it opened)."""
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.uint8).tobytes()).hexdigest()


def grant_digest(positions: np.ndarray) -> str:
    """SHA-256 of a grant's cache positions: which cache a run's positions index."""
    return hashlib.sha256(np.ascontiguousarray(positions, dtype="<i8").tobytes()).hexdigest()


class PreparedCentre:
    """The centre's table for one key period: ids hashed with the period salt, blinded, shuffled.

    ``query_budget`` bounds the ids one bank may have evaluated per period (the offline
    membership test the cache gives it); rotate the period (a new :class:`PreparedCentre`)
    when it is spent or the period ends.
    """

    def __init__(
        self,
        ids: Sequence[object],
        *,
        period: str,
        truncate: int = DEFAULT_TRUNCATE,
        validator: Validator | None = None,
        query_budget: int = DEFAULT_QUERY_BUDGET,
        pool: ChunkMapper | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if not MIN_TRUNCATE <= truncate <= POINT_BYTES:
            raise ValueError(f"truncate must be in [{MIN_TRUNCATE}, {POINT_BYTES}], got {truncate}")
        self.period, self.truncate, self.query_budget = period, truncate, query_budget
        self.chunk_size = chunk_size
        self._pool: ChunkMapper = pool or SerialMapper()
        self._salt = session_salt(f"ubpsi-period:{period}")
        self._secret = os.urandom(32)  # k_C: one per key period, never leaves the centre
        t0 = time.perf_counter()
        prepared = prepare_ids("unbalanced PSI centre", ids, validator=validator)
        self._ids, self._rows, self.stats = prepared.ids, prepared.rows, prepared.stats
        rng = np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
        self._perm = rng.permutation(self._ids.size)  # token position -> prepared index
        cs = chunk_size
        shuffled = self._ids[self._perm]
        tasks = ((self._secret, self._salt, shuffled[i : i + cs]) for i in range(0, shuffled.size, cs))
        points = run_chunks(self._pool, hash_and_blind, tasks, self._fail_prepare)
        self._tokens = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)[:, :truncate].copy()
        self._grants: dict[str, _Grant] = {}
        self.prepare_seconds = time.perf_counter() - t0
        log.info("unbalanced PSI centre: prepared %d tokens in %.1fs", self._ids.size, self.prepare_seconds)

    # -- persistence (protocols.psi.unbalanced.store writes these to the centre's node) -----
    def to_record(self) -> TableRecord:
        width = self._ids.dtype.itemsize
        ids = np.frombuffer(self._ids.tobytes(), dtype=np.uint8).reshape(self._ids.size, width)
        return TableRecord(
            period=self.period,
            truncate=self.truncate,
            query_budget=self.query_budget,
            secret=self._secret,
            ids=ids,
            rows=np.asarray(self._rows, dtype=np.int64),
            perm=np.asarray(self._perm, dtype=np.int64),
            tokens=self._tokens,
            stats=json.dumps({k: int(v) for k, v in self.stats.items()}),
            prepare_seconds=float(self.prepare_seconds),
        )

    @classmethod
    def from_record(
        cls, rec: TableRecord, *, pool: ChunkMapper | None = None, chunk_size: int = DEFAULT_CHUNK
    ) -> PreparedCentre:
        """The table of :meth:`to_record`, without grants (:meth:`adopt_grant` adds them)."""
        n, width = rec.ids.shape if rec.ids.ndim == 2 else (0, 1)
        if not (rec.rows.shape == rec.perm.shape == (n,) and rec.tokens.shape == (n, rec.truncate)):
            raise PsiProtocolError(f"unbalanced PSI centre: stored table of period {rec.period!r} is inconsistent")
        self = cls.__new__(cls)
        self.period, self.truncate, self.query_budget = rec.period, rec.truncate, rec.query_budget
        self.chunk_size, self._pool = chunk_size, pool or SerialMapper()
        self._salt = session_salt(f"ubpsi-period:{rec.period}")
        self._secret = rec.secret
        self._ids = np.frombuffer(np.ascontiguousarray(rec.ids).tobytes(), dtype=f"S{max(width, 1)}")[:n]
        self._rows, self._perm, self._tokens = rec.rows, rec.perm, rec.tokens
        self.stats = json.loads(rec.stats)
        self.prepare_seconds = rec.prepare_seconds
        self._grants = {}
        return self

    def view(self, *, pool: ChunkMapper | None = None) -> PreparedCentre:
        """A copy sharing this (read-only) table with an empty grant book: one per operation,
        so concurrent runs never share mutable state in memory (grants live in the store)."""
        v = copy.copy(self)
        v._grants = {}
        if pool is not None:
            v._pool = pool
        return v

    def has_grant(self, bank: str) -> bool:
        return bank in self._grants

    def grant_record(self, bank: str) -> GrantRecord:
        g = self._grants.get(bank)
        if g is None:
            raise PsiProtocolError(f"unbalanced PSI centre: bank {bank!r} has no cache for period {self.period!r}")
        return GrantRecord(bank, self.period, g.positions.astype(np.int64), g.queried, sorted(g.runs), g.cache)

    def adopt_grant(self, rec: GrantRecord) -> None:
        """Take a stored grant back (refused if it is another period's or points outside the table)."""
        pos = np.asarray(rec.positions, dtype=np.int64)
        if rec.period != self.period or (pos.size and (pos.min() < 0 or pos.max() >= self.size)):
            raise PsiProtocolError(
                f"unbalanced PSI centre: stored grant of bank {rec.bank!r} does not fit period {self.period!r}"
            )
        self._grants[rec.bank] = _Grant(positions=pos, queried=int(rec.queried), runs=set(rec.runs), cache=rec.cache)

    def holds_cache(self, bank: str, digest: str) -> bool:
        """Whether ``bank``'s grant is the cache named ``digest`` (False: none, or another table's or
        an older one; the bank then needs a fresh cache before its positions mean anything)."""
        g = self._grants.get(bank)
        return g is not None and bool(g.cache) and g.cache == digest

    def resume_run(self, cp: CentreRunState, *, pool: ChunkMapper | None = None) -> CentreRun:
        """The run of :meth:`CentreRun.checkpoint` again, against the grant it was evaluated on."""
        grant = self._grants.get(cp.bank)
        if grant is None or grant_digest(grant.positions) != cp.grant_digest:
            raise PsiProtocolError(
                f"unbalanced PSI centre, bank {cp.bank!r}, run {cp.session!r}: the bank's cache was replaced "
                "during this run (its positions would index another cache)"
            )
        run = CentreRun(self, cp.bank, cp.session, grant, pool or self._pool)
        run._restore(cp)
        return run

    @staticmethod
    def _fail_prepare(what: str) -> Exception:
        return PsiProtocolError(f"unbalanced PSI centre, preparation: {what}")

    @property
    def size(self) -> int:
        return int(self._ids.size)

    def cache_for(self, bank: str, bank_key: bytes, *, allowed: Allowed | None = None) -> UbCache:
        """The sealed tokens of the firms ``bank`` may match (``allowed``: its consent filter).

        No cryptography beyond sealing: selection and a reshuffle, so consent may differ per
        bank without re-blinding. A new cache for the same bank replaces its grant.
        """
        keep = np.ones(self._ids.size, dtype=bool)
        if allowed is not None:
            check = allowed if callable(allowed) else allowed.__contains__
            shuffled = self._ids[self._perm]
            keep = np.fromiter((bool(check(s.decode())) for s in shuffled.tolist()), dtype=bool, count=shuffled.size)
        rng = np.random.default_rng(int.from_bytes(os.urandom(32), "little"))
        positions = np.flatnonzero(keep)
        positions = positions[rng.permutation(positions.size)]  # per-bank order: caches don't line up
        previous = self._grants.get(bank)
        self._grants[bank] = _Grant(
            positions=positions,
            queried=previous.queried if previous else 0,
            runs=previous.runs if previous else set(),
            cache=cache_digest(self._tokens[positions]),
        )
        key = new_private_key()
        try:
            link = Channel(key, bank_key, protocol=PROTOCOL, session=self.period, me=CENTRE, peer=bank)
        except ChannelError as exc:
            raise PsiProtocolError(f"unbalanced PSI centre, cache for {bank!r}: channel key refused: {exc}") from None
        n = int(positions.size)
        sealed = link.seal(self._tokens[positions].tobytes(), message="UbCache", count=n, truncate=self.truncate)
        return UbCache(
            protocol=PROTOCOL,
            period=self.period,
            bank=bank,
            count=n,
            truncate=self.truncate,
            channel_key=public_key_of(key),
            bank_key=bank_key,
            sealed=sealed,
        )

    def run(self, bank: str, session: str, *, pool: ChunkMapper | None = None) -> CentreRun:
        """A new run of ``bank`` against this period's table (its own state and channel key)."""
        grant = self._grants.get(bank)
        if grant is None:
            raise PsiProtocolError(f"unbalanced PSI centre: bank {bank!r} has no cache for period {self.period!r}")
        if session in grant.runs:
            raise PsiProtocolError(f"unbalanced PSI centre: run {session!r} of bank {bank!r} already started")
        grant.runs.add(session)
        return CentreRun(self, bank, session, grant, pool or self._pool)


class CentreRun:
    """One bank's run: evaluate its query once, then take its matched positions."""

    def __init__(self, table: PreparedCentre, bank: str, session: str, grant: _Grant, pool: ChunkMapper) -> None:
        self._table, self.bank, self.session, self._grant, self._pool = table, bank, session, grant, pool
        self._who = f"unbalanced PSI centre, bank {bank!r}, run {session!r}"
        self._channel = new_private_key()
        self._peer_key = b""
        self._link: Channel | None = None
        self._query_count = 0
        self.state = "init"
        self._result: PsiResult | None = None
        self.stats: dict[str, int] = {}

    def _error(self, step: str, what: str) -> PsiProtocolError:
        return PsiProtocolError(f"{self._who}, {step}: {what}")

    def checkpoint(self) -> CentreRunState:
        """This run's per-run secrets and position, to continue it in another process."""
        return CentreRunState(
            bank=self.bank,
            session=self.session,
            state=self.state,
            channel=self._channel,
            peer_key=self._peer_key,
            query_count=self._query_count,
            grant_digest=grant_digest(self._grant.positions),
        )

    def _restore(self, cp: CentreRunState) -> None:
        if (cp.bank, cp.session) != (self.bank, self.session) or cp.state not in ("init", "evaluated"):
            raise self._error("restore", f"state of bank {cp.bank!r}, run {cp.session!r} in {cp.state!r}")
        self._channel, self._peer_key, self._query_count, self.state = cp.channel, cp.peer_key, cp.query_count, cp.state
        if cp.state == "evaluated":
            self._link = Channel(
                self._channel, cp.peer_key, protocol=PROTOCOL, session=self.session, me=CENTRE, peer=self.bank
            )

    def evaluate(self, msg: UbQuery | bytes) -> UbEvaluated:
        """``P^k_C`` for each of the bank's blinded points: ``count`` multiplications, sealed."""
        if self.state != "init":
            raise self._error(STEP_QUERY, f"query received in state {self.state!r}")
        t = self._table
        q = expect(self._who, STEP_QUERY, msg, UbQuery, t.period)
        if q.session != self.session or q.bank != self.bank:
            raise self._error(STEP_QUERY, f"query is for bank {q.bank!r}, run {q.session!r}")
        if len(q.points) != q.count * POINT_BYTES:
            raise self._error(STEP_QUERY, f"{len(q.points)} bytes of points is not count {q.count} x {POINT_BYTES}")
        if self._grant.queried + q.count > t.query_budget:
            raise self._error(
                STEP_QUERY,
                f"query of {q.count} ids exceeds the bank's budget ({self._grant.queried} of {t.query_budget} "
                f"used in period {t.period!r}); rotate the key period",
            )
        try:
            self._link = Channel(
                self._channel, q.channel_key, protocol=PROTOCOL, session=self.session, me=CENTRE, peer=self.bank
            )
        except ChannelError as exc:
            raise self._error(STEP_QUERY, f"channel key refused: {exc}") from None
        t0 = time.perf_counter()
        step = POINT_BYTES * t.chunk_size
        tasks = ((t._secret, q.points[o : o + step], POINT_BYTES) for o in range(0, len(q.points), step))
        out = run_chunks(self._pool, reblind, tasks, lambda w: self._error(STEP_QUERY, w))
        self._grant.queried += q.count
        self._query_count, self._peer_key = q.count, q.channel_key
        self.stats.update(peer_used=q.count, evaluate_ms=round(1000 * (time.perf_counter() - t0)))
        self.state = "evaluated"
        sealed = self._link.seal(out, message="UbEvaluated", count=q.count)
        return UbEvaluated(
            protocol=PROTOCOL,
            period=t.period,
            session=self.session,
            count=q.count,
            channel_key=public_key_of(self._channel),
            sealed=sealed,
        )

    def finish(self, msg: UbMatches | bytes) -> PsiResult:
        """Check the bank's matched positions and return the centre's rows in the agreed order.

        Refused: more matches than queried ids, positions outside the bank's cache, and
        positions not strictly increasing by token (duplicates, or not the agreed order).
        """
        if self.state != "evaluated":
            raise self._error(STEP_MATCH, f"matches received in state {self.state!r}")
        t = self._table
        m = expect(self._who, STEP_MATCH, msg, UbMatches, t.period)
        if m.session != self.session:
            raise self._error(STEP_MATCH, f"matches are for run {m.session!r}")
        if m.count > self._query_count:
            raise self._error(STEP_MATCH, f"{m.count} matches for a query of {self._query_count} ids")
        assert self._link is not None
        try:
            raw = self._link.open(m.sealed, message="UbMatches", count=m.count)
        except ChannelError:
            raise self._error(
                STEP_MATCH, "sealed positions fail authentication (tampered, or from another run)"
            ) from None
        if len(raw) != 4 * m.count:
            raise self._error(STEP_MATCH, f"{len(raw)} bytes of positions is not count {m.count} x 4")
        pos = np.frombuffer(raw, dtype="<u4").astype(np.int64)
        grant = self._grant.positions
        if pos.size and (pos.max() >= grant.size):
            raise self._error(STEP_MATCH, f"position {int(pos.max())} outside the bank's cache of {grant.size}")
        table_pos = grant[pos]
        tokens = t._tokens[table_pos]
        if pos.size > 1:
            a, b = tokens[:-1], tokens[1:]
            diff = a != b
            first = diff.argmax(axis=1)
            rows = np.arange(a.shape[0])
            if not (diff.any(axis=1) & (a[rows, first] < b[rows, first])).all():
                raise self._error(STEP_MATCH, "positions are not strictly increasing by token (not the agreed order)")
        items = t._perm[table_pos]
        self.stats["intersection"] = int(items.size)
        self._result = PsiResult(
            ids=[s.decode() for s in t._ids[items].tolist()],
            rows=t._rows[items],
            size=int(items.size),
            stats={**t.stats, **self.stats},
        )
        self.state = "done"
        return self._result
