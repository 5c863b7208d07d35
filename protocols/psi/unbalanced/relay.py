"""Unbalanced PSI as relay-driven, restartable parties: what a vertical run's ``align`` phase drives.

Steps (bank = PSI role A, centre = role B), as the coordinator relays them:

* init: the bank sends :class:`UbQuery` if its store holds this period's cache from this centre,
  else :class:`UbCacheRequest` (one extra round trip, once per bank and period: the centre
  answers :class:`UbCache`, the bank keeps it in its store and then queries). The centre sends
  nothing.
* the centre evaluates the query (:class:`UbEvaluated`); the bank unblinds, matches and sends
  :class:`UbMatches` (bank done); the centre checks them (centre done).

What persists where: the period's table and each bank's grant and budget in the centre's
:class:`~protocols.psi.unbalanced.store.CentreStore`, the cache in the bank's
:class:`~protocols.psi.unbalanced.store.BankStore` (both node-local files, kept across runs);
the per-run secrets (``k_B``, channel keys) in the party state (``to_state``), like
:class:`protocols.psi.party.PsiRelayParty`. Ids are never in either: the node hands them back.
"""

from __future__ import annotations

import contextlib
import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from protocols.common import wire
from protocols.common.channel import public_key_of
from protocols.common.party import Envelope, RestartableParty, open_envelope
from protocols.psi.engine import PsiResult
from protocols.psi.kernels import ChunkMapper, open_pool
from protocols.psi.prepare import Allowed
from protocols.psi.unbalanced.bank import BankCache, BankRun, BankRunState
from protocols.psi.unbalanced.centre import DEFAULT_QUERY_BUDGET, CentreRunState, PreparedCentre
from protocols.psi.unbalanced.common import expect
from protocols.psi.unbalanced.messages import (
    PROTOCOL,
    STEP_CACHE,
    STEP_EVAL,
    STEP_MATCH,
    STEP_QUERY,
    STEP_REQUEST,
    UbCache,
    UbCacheRequest,
    UbEvaluated,
    UbMatches,
    UbQuery,
)
from protocols.psi.unbalanced.store import BankStore, CentreStore, ids_digest

_NONE = np.zeros(0, dtype=np.int64)


@dataclass
class _UbState:
    """Persisted between steps (node-local): who, where in the protocol, this run's secrets."""

    version: str
    role: str
    name: str
    data_digest: str
    peer: str
    session: str
    period: str
    phase: str
    cache_key: bytes  # bank: the private key a cache was requested under (b"" otherwise)
    run: bytes  # wire of BankRunState / CentreRunState once the run is under way (b"" before)
    rows: np.ndarray  # own rows of the intersection in the agreed order, once done
    stats: str  # JSON counts for the phase summary


class _UbParty(RestartableParty):
    """What both sides share: state layout, one envelope per step, the result."""

    state_type = _UbState
    s: _UbState

    def __init__(
        self, name: str, peer: str, ids: Sequence[str], *, session: str, period: str, workers: int = 1
    ) -> None:
        self.name, self.peer, self.ids, self.workers = name, peer, ids, workers
        self.pool: ChunkMapper | None = None  # set for the duration of a step when workers != 1
        self.s = _UbState(
            version=self.state_version,
            role=self.role,
            name=name,
            data_digest=ids_digest(ids),
            peer=peer,
            session=session,
            period=period,
            phase="init",
            cache_key=b"",
            run=b"",
            rows=_NONE,
            stats="{}",
        )

    def _restore(self, s: _UbState) -> None:
        if s.session != self.s.session:
            raise self._fail(f"state is of run {s.session!r}, not of this run {self.s.session!r}")
        super()._restore(s)

    def _done(self, rows: np.ndarray, stats: dict[str, int]) -> None:
        self.s.rows, self.s.stats, self.s.phase, self.s.run = np.asarray(rows, np.int64), json.dumps(stats), "done", b""

    @contextlib.contextmanager
    def _pooled(self) -> Iterator[None]:
        """Worker processes for the curve operations of one step, stopped when the step ends
        (nothing may outlive a step: the next one may run in another process)."""
        if self.workers == 1:
            yield
            return
        pool = open_pool(self.workers or None, "forkserver")
        self.pool = pool
        try:
            yield
        finally:
            self.pool = None
            pool.close()
            pool.join()

    def start(self) -> list[Envelope]:
        with self._pooled():
            return self._start()

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        with self._pooled():
            return self._receive(inbox)

    @abstractmethod
    def _start(self) -> list[Envelope]: ...

    @abstractmethod
    def _receive(self, inbox: list[Envelope]) -> list[Envelope]: ...

    @property
    def finished(self) -> bool:
        return self.s.phase == "done"

    def result(self) -> PsiResult:
        """``rows`` index the ids this party was built with; both sides list them in the same order."""
        if not self.finished:
            raise self._fail("has not finished")
        rows = self.s.rows
        stats = json.loads(self.s.stats)
        return PsiResult(ids=[self.ids[i] for i in rows.tolist()], rows=rows, size=int(rows.size), stats=stats)


class UbBankParty(_UbParty):
    """The bank: fetch the period's cache if it has none, then query, unblind and match."""

    role = "unbalanced PSI bank"
    state_version = "ubpsi-bank-v1"

    def __init__(
        self,
        name: str,
        peer: str,
        ids: Sequence[str],
        *,
        session: str,
        period: str,
        store: BankStore,
        allowed: Allowed | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(name, peer, ids, session=session, period=period, workers=workers)
        self.store, self.allowed = store, allowed

    def _run(self, cache: BankCache) -> BankRun:
        return BankRun(self.name, self.ids, cache, session=self.s.session, allowed=self.allowed, pool=self.pool)

    def _query(self, cache: BankCache, fetched: bool) -> list[Envelope]:
        run = self._run(cache)
        q = run.query()
        self.s.run, self.s.phase, self.s.cache_key = wire.encode(run.checkpoint()), "queried", b""
        self.s.stats = json.dumps({"cache_fetched": int(fetched), "cache_size": cache.size})
        return [self.send(self.peer, q)]

    def _start(self) -> list[Envelope]:
        cache = self.store.load(self.s.period, self.name, self.peer)
        if cache is not None:
            return self._query(cache, fetched=False)
        key = BankCache.new_key()
        self.s.cache_key, self.s.phase = key, "want_cache"
        req = UbCacheRequest(PROTOCOL, self.s.period, self.name, 0, public_key_of(key))
        return [self.send(self.peer, req)]

    def _receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        where = f"{self.role} {self.name!r}, run {self.s.session!r}"
        if self.s.phase == "want_cache":
            msg = open_envelope(env, UbCache, f"{where}, {STEP_CACHE}")
            cache = BankCache.open(msg, self.s.cache_key, bank=self.name, period=self.s.period)
            self.store.save(cache, self.peer)
            return self._query(cache, fetched=True)
        if self.s.phase == "queried" and env.kind == "UbCache":
            # the centre holds no grant matching this bank's cache (it prepared the period again):
            # it answered the query with a fresh cache, sealed to this run's channel key
            if json.loads(self.s.stats).get("cache_fetched"):
                raise self._fail(f"{STEP_CACHE}: a second cache in one run")
            cp = wire.decode(self.s.run, BankRunState)
            msg = open_envelope(env, UbCache, f"{where}, {STEP_CACHE}")
            cache = BankCache.open(msg, cp.channel, bank=self.name, period=self.s.period)
            self.store.save(cache, self.peer)
            return self._query(cache, fetched=True)
        if self.s.phase == "queried":
            e = open_envelope(env, UbEvaluated, f"{where}, {STEP_EVAL}")
            held = self.store.load(self.s.period, self.name, self.peer)
            if held is None:
                raise self._fail(f"{STEP_EVAL}: this period's cache vanished from the store during the run")
            run = self._run(held)
            run.resume(wire.decode(self.s.run, BankRunState))
            m = run.handle(e)
            res = run.result()
            fetched = json.loads(self.s.stats)
            self._done(res.rows, {**res.stats, **fetched})
            return [self.send(self.peer, m)]
        raise self._fail(f"unexpected {env.kind} in state {self.s.phase!r}")

    @classmethod
    def from_state(cls, state: bytes, ids: Sequence[str], *, session: str, **options: object) -> UbBankParty:
        """Rebuild from :meth:`to_state` for run ``session`` (a state of another run is refused),
        the same ids and the same ``store``/``allowed``/``workers``."""
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, ids, session=session, period=s.period, **options)  # type: ignore[arg-type]
        party._restore(s)
        return party


class UbCentreParty(_UbParty):
    """The centre: hand out a cache on request, evaluate the query, check the matched positions."""

    role = "unbalanced PSI centre"
    state_version = "ubpsi-centre-v1"

    def __init__(
        self,
        name: str,
        peer: str,
        ids: Sequence[str],
        *,
        session: str,
        period: str,
        store: CentreStore,
        truncate: int,
        query_budget: int = DEFAULT_QUERY_BUDGET,
        allowed: Allowed | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(name, peer, ids, session=session, period=period, workers=workers)
        self.store, self.truncate, self.query_budget = store, truncate, query_budget
        self.allowed = allowed
        self.prepared = False  # whether this step prepared the period's table

    def _table(self) -> PreparedCentre:
        table, self.prepared = self.store.table(
            self.s.period,
            self.ids,
            digest=self.s.data_digest,
            truncate=self.truncate,
            query_budget=self.query_budget,
            pool=self.pool,
        )
        return table

    def _stats(self, **more: int) -> None:
        self.s.stats = json.dumps({**json.loads(self.s.stats), **more})

    def _start(self) -> list[Envelope]:
        self.s.phase = "wait"
        return []

    def _receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        where = f"{self.role} {self.name!r}, bank {self.peer!r}, run {self.s.session!r}"
        if self.s.phase == "wait" and env.kind == "UbCacheRequest" and not self.s.cache_key:
            req = expect(where, STEP_REQUEST, env.payload, UbCacheRequest, self.s.period)
            if req.bank != self.peer:
                raise self._fail(f"{STEP_REQUEST}: request names bank {req.bank!r}, the peer is {self.peer!r}")
            table = self._table()
            with self.store.grants(table, self.peer) as t:
                cache = t.cache_for(self.peer, req.bank_key, allowed=self.allowed)
            self.s.cache_key = b"sent"  # marks that this run already handed out a cache: one per run
            self._stats(table_prepared=int(self.prepared), cache_sent=1, cache_size=cache.count)
            return [self.send(self.peer, cache)]
        if self.s.phase == "wait":
            # checked before the table is touched: a wrong period must not make the centre prepare one
            q = expect(where, STEP_QUERY, env.payload, UbQuery, self.s.period)
            table = self._table()
            with self.store.grants(table, self.peer) as t:
                if not t.holds_cache(self.peer, q.cache):
                    if self.s.cache_key:
                        raise self._fail(f"{STEP_QUERY}: the bank queries with another cache than it was just given")
                    # no grant, or the bank's cache is of an older table: a fresh one, sealed to the run's key
                    fresh = t.cache_for(self.peer, q.channel_key, allowed=self.allowed)
                    self.s.cache_key = b"sent"
                    self._stats(table_prepared=int(self.prepared), cache_sent=1, stale_cache=1, cache_size=fresh.count)
                    return [self.send(self.peer, fresh)]
                run = t.run(self.peer, self.s.session)
                evaluated = run.evaluate(q)
            self.s.run, self.s.phase = wire.encode(run.checkpoint()), "evaluated"
            prepared = json.loads(self.s.stats).get("table_prepared", 0) or int(self.prepared)
            self._stats(table_prepared=prepared, table_size=table.size, **run.stats)
            return [self.send(self.peer, evaluated)]
        if self.s.phase == "evaluated":
            m = expect(where, STEP_MATCH, env.payload, UbMatches, self.s.period)
            table = self._table()
            with self.store.grants(table, self.peer) as t:
                run = t.resume_run(wire.decode(self.s.run, CentreRunState))
                res = run.finish(m)
            stats = {**json.loads(self.s.stats), "intersection": res.size}
            self._done(res.rows, {k: int(v) for k, v in stats.items()})
            return []
        raise self._fail(f"unexpected {env.kind} in state {self.s.phase!r}")

    @classmethod
    def from_state(cls, state: bytes, ids: Sequence[str], *, session: str, **options: object) -> UbCentreParty:
        """Rebuild from :meth:`to_state` for run ``session`` (a state of another run is refused),
        the same ids and the same store and settings."""
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, ids, session=session, period=s.period, **options)  # type: ignore[arg-type]
        party._restore(s)
        return party
