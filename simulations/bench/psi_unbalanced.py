"""Benchmark unbalanced PSI: a big centre prepared once, then several runs of one small bank.

    .venv/bin/python simulations/bench/psi.py --unbalanced --bank 200000 --centre 4000000

Generates ``centre`` distinct valid USCCs (vectorised) and a bank of ``bank`` ids of which
``known`` are firms of the centre (the rest are not), prepares the centre's table once
(reported separately: once per key period), hands the bank its sealed cache (once per bank and
period), then times ``runs`` online runs, each checked against a plaintext intersection (ids,
agreed order, rows on both sides). The last line of output is JSON.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

import numpy as np

from fedcredit.data import uscc
from protocols.psi import open_pool
from protocols.psi.unbalanced import PreparedCentre, UnbalancedTimings, run_unbalanced_local
from protocols.psi.unbalanced.local import fetch_cache


def make_sets(n_centre: int, n_bank: int, known: float, seed: int) -> tuple[list[str], list[str], set[str]]:
    """Centre ids, bank ids (``known`` of them also the centre's), and the true intersection."""
    rng = np.random.default_rng(seed)
    n_known = round(known * n_bank)
    bodies = rng.choice(10**8, size=n_centre + n_bank - n_known, replace=False)
    divs = rng.integers(0, len(uscc.DIVISIONS), size=bodies.size)
    ids = uscc.from_indices(bodies, divs).tolist()
    centre = ids[:n_centre]
    bank = [centre[i] for i in rng.choice(n_centre, size=n_known, replace=False)] + ids[n_centre:]
    rng.shuffle(bank)
    return centre, bank, set(bank) & set(centre)


def correct(centre: list[str], bank: list[str], truth: set[str], res_c: Any, res_b: Any) -> bool:
    return (
        set(res_b.ids) == truth
        and res_c.ids == res_b.ids
        and all(centre[r] == i for r, i in zip(res_c.rows.tolist(), res_c.ids))
        and all(bank[r] == i for r, i in zip(res_b.rows.tolist(), res_b.ids))
    )


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cpu_with_pool(pool: Any) -> float:
    """CPU seconds of this process, its joined children and the live pool workers (/proc)."""
    total = _cpu()
    tick = os.sysconf("SC_CLK_TCK")
    for proc in getattr(pool, "_pool", []) or []:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def main(n_centre: int, n_bank: int, *, known: float = 0.85, runs: int = 2, workers: int = 2, seed: int = 0) -> int:
    t0 = time.perf_counter()
    centre, bank, truth = make_sets(n_centre, n_bank, known, seed)
    print(f"generated centre {n_centre} and bank {n_bank} ({len(truth)} common) in {time.perf_counter() - t0:.1f}s")
    load_before = os.getloadavg()[0]
    pool = open_pool(workers) if workers > 1 else None
    try:
        t0, c0 = time.perf_counter(), _cpu_with_pool(pool)
        table = PreparedCentre(centre, period="bench-period", pool=pool, query_budget=max(2_000_000, runs * n_bank))
        prepare, prepare_cpu = time.perf_counter() - t0, _cpu_with_pool(pool) - c0
        print(f"centre prepared {table.size} tokens in {prepare:.1f}s (once per key period)")
        tm = UnbalancedTimings()
        cache = fetch_cache(table, "bank1", timings=tm)
        print(
            f"cache handed to the bank in {tm.cache_seconds:.1f}s, {tm.cache_bytes / 1e6:.1f} MB (once per bank and period)"
        )
        online, online_cpu, ok, steps, online_bytes, size = [], [], True, {}, 0, 0
        for r in range(runs):
            tr, c0 = UnbalancedTimings(), _cpu_with_pool(pool)
            res_c, res_b = run_unbalanced_local(table, "bank1", bank, cache, session=f"run-{r}", pool=pool, timings=tr)
            good = correct(centre, bank, truth, res_c, res_b)
            ok &= good
            online.append(round(tr.online_seconds, 2))
            online_cpu.append(round(_cpu_with_pool(pool) - c0, 2))
            steps, online_bytes, size = tr.steps, tr.online_bytes, res_b.size
            print(
                f"run {r}: online {tr.online_seconds:.1f}s ({online_cpu[-1]:.1f} CPU-s), intersection {res_b.size}, correct={good}"
            )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    out = {
        "mode": "unbalanced",
        "centre": n_centre,
        "bank": n_bank,
        "known": known,
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "prepare_seconds": round(prepare, 2),
        "prepare_cpu_seconds": round(prepare_cpu, 2),
        "cache_seconds": round(tm.cache_seconds, 2),
        "cache_bytes": tm.cache_bytes,
        "online_seconds": online,
        "online_cpu_seconds": online_cpu,
        "online_quiet_estimate_seconds": [round(c / max(1, workers), 2) for c in online_cpu],
        "online_steps_last_run": {k: round(v, 2) for k, v in steps.items()},
        "online_bytes": online_bytes,
        "intersection": size,
        "correct": ok,
        "cpu_seconds_total": round(_cpu(), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))
    return 0 if ok else 1
