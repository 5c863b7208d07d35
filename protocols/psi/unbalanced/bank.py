"""The bank's side of unbalanced PSI: keep the period's cache, run each query in ``O(|B|)``.

Per run the bank hashes its ids with the period salt, blinds them with a fresh invertible
``k_B`` (:mod:`protocols.psi.unbalanced.scalars`), gets them multiplied by ``k_C``, unblinds
(``H(b)^k_C``), truncates and looks the tokens up in its cache (sorted once per period), then
sends the centre the matched cache positions sorted by token: the agreed order both sides use
for the aligned rows. Three ``|B|``-sized X25519 passes, nothing proportional to ``|C|``
except a binary search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protocols.common.channel import Channel, ChannelError, new_private_key, public_key_of
from protocols.psi.engine import DEFAULT_CHUNK, PsiProtocolError, PsiResult
from protocols.psi.kernels import POINT_BYTES, ChunkMapper, SerialMapper, hash_and_blind, reblind, session_salt
from protocols.psi.matching import has_key_collision, key_columns
from protocols.psi.prepare import MAX_ITEMS, Allowed, Validator, prepare_ids
from protocols.psi.unbalanced.centre import CENTRE, cache_digest
from protocols.psi.unbalanced.common import expect, run_chunks
from protocols.psi.unbalanced.messages import (
    PROTOCOL,
    STEP_CACHE,
    STEP_EVAL,
    UbCache,
    UbEvaluated,
    UbMatches,
    UbQuery,
)
from protocols.psi.unbalanced.scalars import new_invertible_secret, split_by_side, twist_mask

log = logging.getLogger(__name__)


@dataclass
class BankRunState:
    """What a :class:`BankRun` must keep between two relay steps (node-local: ``k_B`` and a channel key)."""

    bank: str
    session: str
    period: str
    state: str
    secret: bytes
    inv_curve: bytes
    inv_twist: bytes
    channel: bytes
    count: int


class BankCache:
    """The centre's tokens this bank may match in one key period, indexed for lookups."""

    def __init__(self, bank: str, period: str, truncate: int, tokens: np.ndarray) -> None:
        self.bank, self.period, self.truncate = bank, period, truncate
        self.tokens = tokens  # (count, truncate) uint8 in cache-position order: what the store keeps
        self._digest: str | None = None
        cols = key_columns(tokens)
        self._order = np.lexsort(cols.T[::-1])  # cache positions sorted by token
        self._sorted = cols[self._order]
        self.size = int(tokens.shape[0])

    @property
    def digest(self) -> str:
        """SHA-256 of the tokens in cache order: names this cache to the centre (:func:`cache_digest`)."""
        if self._digest is None:
            self._digest = cache_digest(self.tokens)
        return self._digest

    @staticmethod
    def new_key() -> bytes:
        """A fresh channel private key to request a cache with (send its public key)."""
        return new_private_key()

    @classmethod
    def open(cls, msg: UbCache | bytes, private_key: bytes, *, bank: str, period: str) -> BankCache:
        """Open the centre's sealed cache (refused if addressed to another bank or period)."""
        who = f"unbalanced PSI bank {bank!r}"
        c = expect(who, STEP_CACHE, msg, UbCache, period)
        if c.bank != bank or c.bank_key != public_key_of(private_key):
            raise PsiProtocolError(f"{who}, {STEP_CACHE}: cache addressed to {c.bank!r} under another key")
        if len(c.sealed) != c.count * c.truncate + 16:
            raise PsiProtocolError(
                f"{who}, {STEP_CACHE}: sealed cache is not count {c.count} x {c.truncate} + 16 bytes"
            )
        try:
            link = Channel(private_key, c.channel_key, protocol=PROTOCOL, session=period, me=bank, peer=CENTRE)
            raw = link.open(c.sealed, message="UbCache", count=c.count, truncate=c.truncate)
        except ChannelError as exc:
            raise PsiProtocolError(f"{who}, {STEP_CACHE}: sealed cache refused ({exc})") from None
        tokens = np.frombuffer(raw, dtype=np.uint8).reshape(c.count, c.truncate)
        return cls(bank, period, c.truncate, tokens)

    def lookup(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into ``cols``, cache positions) of the tokens found in the cache."""
        if cols.shape[0] == 0 or self.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        first = self._sorted[:, 0]
        lo = np.searchsorted(first, cols[:, 0], side="left")
        hi = np.searchsorted(first, cols[:, 0], side="right")
        hit = np.zeros(cols.shape[0], dtype=bool)
        single = np.flatnonzero(hi - lo == 1)
        hit[single] = (self._sorted[lo[single]] == cols[single]).all(axis=1)
        at = lo.copy()
        for i in np.flatnonzero(hi - lo > 1):  # first 8 bytes collide: compare in full
            same = np.flatnonzero((self._sorted[lo[i] : hi[i]] == cols[i]).all(axis=1))
            if same.size:
                hit[i], at[i] = True, lo[i] + same[0]
        idx = np.flatnonzero(hit)
        return idx.astype(np.int64), self._order[at[idx]].astype(np.int64)


class BankRun:
    """One run of the bank: :meth:`query`, then :meth:`handle` the evaluation -> :class:`UbMatches`."""

    def __init__(
        self,
        bank: str,
        ids: Sequence[object],
        cache: BankCache,
        *,
        session: str,
        allowed: Allowed | None = None,
        validator: Validator | None = None,
        pool: ChunkMapper | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        if cache.bank != bank:
            raise ValueError(f"cache belongs to bank {cache.bank!r}, not {bank!r}")
        self.bank, self.session, self.cache, self.chunk_size = bank, session, cache, chunk_size
        self._who = f"unbalanced PSI bank {bank!r}, run {session!r}"
        self._pool: ChunkMapper = pool or SerialMapper()
        self._secret, self._inv_curve, self._inv_twist = new_invertible_secret()  # fresh k_B per run
        self._channel = new_private_key()
        self._link: Channel | None = None
        prepared = prepare_ids(f"unbalanced PSI bank {bank!r}", ids, allowed=allowed, validator=validator)
        self._ids, self._rows, self.stats = prepared.ids, prepared.rows, prepared.stats
        self._invalid_rows, self._duplicate_rows = prepared.invalid_rows, prepared.duplicate_rows
        self.state = "init"
        self._result: PsiResult | None = None
        self.timings: dict[str, float] = {}

    def _error(self, step: str, what: str) -> PsiProtocolError:
        return PsiProtocolError(f"{self._who}, {step}: {what}")

    def checkpoint(self) -> BankRunState:
        """This run's secrets and position, to continue it in another process (node-local)."""
        return BankRunState(
            bank=self.bank,
            session=self.session,
            period=self.cache.period,
            state=self.state,
            secret=self._secret,
            inv_curve=self._inv_curve,
            inv_twist=self._inv_twist,
            channel=self._channel,
            count=getattr(self, "_count", 0),
        )

    def resume(self, cp: BankRunState) -> None:
        """Continue the run of :meth:`checkpoint` (this object was built from the same ids and cache)."""
        if (cp.bank, cp.session, cp.period) != (self.bank, self.session, self.cache.period):
            raise self._error("restore", f"state is for bank {cp.bank!r}, run {cp.session!r}, period {cp.period!r}")
        if cp.state != "queried" or cp.count != self._ids.size:
            raise self._error("restore", f"state {cp.state!r} with {cp.count} ids cannot be resumed")
        self._secret, self._inv_curve, self._inv_twist = cp.secret, cp.inv_curve, cp.inv_twist
        self._channel, self._count, self.state = cp.channel, cp.count, cp.state

    def query(self) -> UbQuery:
        """``H(b)^k_B`` for the bank's ids (sorted order: the blinding hides it; fresh ``k_B``)."""
        if self.state != "init":
            raise PsiProtocolError(f"{self._who}: query() called twice")
        t0 = time.perf_counter()
        cs, salt = self.chunk_size, session_salt(f"ubpsi-period:{self.cache.period}")
        tasks = ((self._secret, salt, self._ids[i : i + cs]) for i in range(0, self._ids.size, cs))
        points = run_chunks(self._pool, hash_and_blind, tasks, lambda w: self._error("query", w))
        self._count = int(self._ids.size)
        self.state = "queried"
        self.timings["blind_s"] = time.perf_counter() - t0
        return UbQuery(
            protocol=PROTOCOL,
            period=self.cache.period,
            session=self.session,
            bank=self.bank,
            count=self._count,
            channel_key=public_key_of(self._channel),
            points=points,
            cache=self.cache.digest,
        )

    def handle(self, msg: UbEvaluated | bytes) -> UbMatches:
        """Unblind the centre's evaluations, look them up, reply with the matched positions."""
        if self.state != "queried":
            raise self._error(STEP_EVAL, f"evaluation received in state {self.state!r}")
        e = expect(self._who, STEP_EVAL, msg, UbEvaluated, self.cache.period)
        if e.session != self.session or e.count != self._count:
            raise self._error(STEP_EVAL, f"evaluation of run {e.session!r}, count {e.count}; expected {self._count}")
        try:
            self._link = Channel(
                self._channel, e.channel_key, protocol=PROTOCOL, session=self.session, me=self.bank, peer=CENTRE
            )
            raw = self._link.open(e.sealed, message="UbEvaluated", count=e.count)
        except ChannelError:
            raise self._error(
                STEP_EVAL, "sealed evaluations fail authentication (tampered, or from another run)"
            ) from None
        if len(raw) != e.count * POINT_BYTES:
            raise self._error(STEP_EVAL, f"{len(raw)} bytes of evaluations is not count {e.count} x {POINT_BYTES}")
        t0 = time.perf_counter()
        tokens = self._unblind(raw)
        cols = key_columns(tokens)
        idx, pos = self.cache.lookup(cols)
        order = self._agreed_order(cols[idx])
        idx, pos = idx[order], pos[order]
        if has_key_collision(cols[idx], np.arange(idx.size)):
            raise self._error(
                STEP_EVAL, f"two matched ids share a {self.cache.truncate}-byte token; use a larger truncate"
            )
        self.timings["unblind_match_s"] = time.perf_counter() - t0
        self.stats["peer_used"] = self.cache.size
        self.stats["intersection"] = int(idx.size)
        self._result = PsiResult(
            ids=[s.decode() for s in self._ids[idx].tolist()],
            rows=self._rows[idx],
            size=int(idx.size),
            stats=dict(self.stats),
            invalid_rows=self._invalid_rows,
            duplicate_rows=self._duplicate_rows,
        )
        self.state = "done"
        assert pos.size <= MAX_ITEMS
        sealed = self._link.seal(pos.astype("<u4").tobytes(), message="UbMatches", count=int(pos.size))
        return UbMatches(
            protocol=PROTOCOL, period=self.cache.period, session=self.session, count=int(pos.size), sealed=sealed
        )

    @staticmethod
    def _agreed_order(matched: np.ndarray) -> np.ndarray:
        """Order of the matched tokens (key columns) both sides list rows in: by token."""
        return np.lexsort(matched.T[::-1])

    def _unblind(self, raw: bytes) -> np.ndarray:
        """``trunc_t(H(b)^k_C)`` per id: multiply curve points by ``k_B^-1 mod l``, twist points mod ``l'``."""
        cs, n = self.chunk_size, len(raw) // POINT_BYTES
        step = POINT_BYTES * cs
        side = run_chunks(
            self._pool,
            twist_mask,
            (raw[o : o + step] for o in range(0, len(raw), step)),
            lambda w: self._error(STEP_EVAL, w),
        )
        pts = np.frombuffer(raw, dtype=np.uint8).reshape(n, POINT_BYTES)
        out = np.empty((n, self.cache.truncate), dtype=np.uint8)
        for where, inv in zip(split_by_side(raw, side), (self._inv_curve, self._inv_twist)):
            sub = pts[where].tobytes()
            tasks = ((inv, sub[o : o + step], self.cache.truncate) for o in range(0, len(sub), step))
            done = run_chunks(self._pool, reblind, tasks, lambda w: self._error(STEP_EVAL, w))
            out[where] = np.frombuffer(done, dtype=np.uint8).reshape(-1, self.cache.truncate)
        return out

    def result(self) -> PsiResult:
        if self._result is None:
            raise PsiProtocolError(f"{self._who}: no result yet (state {self.state})")
        return self._result
