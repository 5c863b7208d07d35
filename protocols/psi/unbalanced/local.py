"""One bank's unbalanced-PSI run against a prepared centre, in one process, through ``wire`` bytes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocols.common import wire
from protocols.common.channel import public_key_of
from protocols.psi.engine import PsiResult
from protocols.psi.kernels import ChunkMapper
from protocols.psi.prepare import Allowed
from protocols.psi.unbalanced.bank import BankCache, BankRun
from protocols.psi.unbalanced.centre import PreparedCentre


@dataclass
class UnbalancedTimings:
    """Seconds per phase and bytes on the wire (``cache_*``: once per bank and period)."""

    cache_seconds: float = 0.0
    cache_bytes: int = 0
    online_seconds: float = 0.0
    online_bytes: int = 0
    steps: dict[str, float] = field(default_factory=dict)


def fetch_cache(
    table: PreparedCentre, bank: str, *, allowed: Allowed | None = None, timings: UnbalancedTimings | None = None
) -> BankCache:
    """The once-per-period cache hand-over for ``bank`` (``allowed``: the centre's consent filter)."""
    t0 = time.perf_counter()
    key = BankCache.new_key()
    data = wire.encode(table.cache_for(bank, public_key_of(key), allowed=allowed))
    cache = BankCache.open(data, key, bank=bank, period=table.period)
    if timings is not None:
        timings.cache_seconds, timings.cache_bytes = time.perf_counter() - t0, len(data)
    return cache


def run_unbalanced_local(
    table: PreparedCentre,
    bank: str,
    bank_ids: Sequence[object],
    cache: BankCache,
    *,
    session: str,
    allowed_bank: Allowed | None = None,
    pool: ChunkMapper | None = None,
    timings: UnbalancedTimings | None = None,
) -> tuple[PsiResult, PsiResult]:
    """(centre's result, bank's result) of one run; ``rows[i]`` of both are the same firm."""
    t0 = time.perf_counter()
    run = BankRun(bank, bank_ids, cache, session=session, allowed=allowed_bank, pool=pool)
    centre = table.run(bank, session, pool=pool)
    q = wire.encode(run.query())
    t1 = time.perf_counter()
    e = wire.encode(centre.evaluate(q))
    t2 = time.perf_counter()
    m = wire.encode(run.handle(e))
    t3 = time.perf_counter()
    res_c = centre.finish(m)
    if timings is not None:
        timings.online_seconds = time.perf_counter() - t0
        timings.online_bytes = len(q) + len(e) + len(m)
        timings.steps = {"bank_prepare_and_blind": t1 - t0, "centre_evaluate": t2 - t1, "bank_unblind_match": t3 - t2}
    return res_c, run.result()
