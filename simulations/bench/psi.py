"""Benchmark ECDH-PSI: both parties in one process tree, checked against a plaintext join.

    .venv/bin/python simulations/bench/psi.py --size 200000 [--overlap 0.5] [--workers 2]

Generates two sets of ``size`` valid USCCs sharing ``overlap * size`` ids, runs
``protocols.psi.run_local`` (through the wire encoding, one shared worker pool), checks the
intersection, row alignment and row indices against plain Python sets, and, when
``openmined.psi`` is importable, times OpenMined PSI (client learns the intersection, raw
encoding, no false positives) on the same sets. The last line of output is JSON.

``items_per_s`` is ``size / seconds`` (ids per party per second); ``ops_per_s`` counts the
4 * size X25519 multiplications the protocol needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit.data import uscc
from protocols.psi import DEFAULT_CHUNK, DEFAULT_TRUNCATE, run_local


def make_sets(size: int, overlap: float, seed: int) -> tuple[list[str], list[str], set[str]]:
    """Two shuffled id lists of ``size`` each with ``round(overlap * size)`` in common."""
    common = round(overlap * size)
    rng = np.random.default_rng(seed)
    ids = uscc.generate(2 * size - common, rng)
    a = ids[:size]
    b = ids[size - common :]
    rng.shuffle(a)
    rng.shuffle(b)
    return a, b, set(ids[size - common : size])


def _cpu_seconds() -> float:
    """User + system CPU of this process and its joined children: load-independent cost."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak_rss() -> None:
    """Reset Linux's peak-RSS mark so the figure covers the PSI run only, not data set-up."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _rss_mb(field: str) -> int | None:
    """A memory figure of this process from /proc (VmRSS now, VmHWM peak), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None


class _SizeLog(list[Any]):
    """A transcript that keeps message sizes only, so it does not inflate the peak RSS.

    It stands in for ``run_local``'s ``list[tuple[str, str, bytes]]``, storing the size in place
    of the bytes (hence ``list[Any]``).
    """

    def append(self, item: tuple[str, str, bytes]) -> None:
        super().append((item[0], item[1], len(item[2])))


def check(a: list[str], b: list[str], truth: set[str], res_a, res_b) -> bool:
    return (
        set(res_a.ids) == truth
        and res_a.ids == res_b.ids  # same agreed order on both sides
        and len(res_a.ids) == len(truth)
        and all(a[r] == i for r, i in zip(res_a.rows.tolist(), res_a.ids))
        and all(b[r] == i for r, i in zip(res_b.rows.tolist(), res_b.ids))
    )


def openmined(a: list[str], b: list[str], truth: set[str]) -> tuple[float, float, bool] | None:
    """OpenMined PSI on the same sets: B is the server, A the client (learns the result)."""
    try:
        import private_set_intersection.python as omp  # type: ignore[import-not-found]  # optional bench extra, untyped
    except ImportError:
        return None
    t0, c0 = time.perf_counter(), time.process_time()
    client = omp.client.CreateWithNewKey(True)
    server = omp.server.CreateWithNewKey(True)
    setup = server.CreateSetupMessage(0.0, len(a), b, omp.DataStructure.RAW)
    request = client.CreateRequest(a)
    response = server.ProcessRequest(request)
    idx = client.GetIntersection(setup, response)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, {a[i] for i in idx} == truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=200_000, help="ids per party")
    p.add_argument("--overlap", type=float, default=0.5, help="fraction of ids in common")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="items per worker task")
    p.add_argument("--truncate", type=int, default=DEFAULT_TRUNCATE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-openmined", action="store_true", help="skip the OpenMined baseline")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--unbalanced", action="store_true", help="unbalanced PSI: big centre prepared once, small bank")
    p.add_argument("--bank", type=int, default=200_000, help="--unbalanced: the bank's ids")
    p.add_argument("--centre", type=int, default=4_000_000, help="--unbalanced: the centre's ids")
    p.add_argument("--known", type=float, default=0.85, help="--unbalanced: share of the bank's ids the centre has")
    p.add_argument("--runs", type=int, default=2, help="--unbalanced: online runs against one preparation")
    args = p.parse_args(argv)
    if args.unbalanced:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for simulations.*
        from simulations.bench.psi_unbalanced import main as unbalanced

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        return unbalanced(
            args.centre, args.bank, known=args.known, runs=args.runs, workers=args.workers, seed=args.seed
        )
    if not 0 <= args.overlap <= 1:
        p.error("--overlap must be in [0, 1]")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )

    t0 = time.perf_counter()
    a, b, truth = make_sets(args.size, args.overlap, args.seed)
    print(
        f"generated 2 x {args.size} ids ({len(truth)} common) in "
        f"{time.perf_counter() - t0:.1f}s; load average {os.getloadavg()[0]:.2f}"
    )

    transcript = _SizeLog()
    load_before = os.getloadavg()[0]
    cpu0 = _cpu_seconds()
    _reset_peak_rss()
    rss0 = _rss_mb("VmRSS:")
    t0 = time.perf_counter()
    res_a, res_b = run_local(
        a,
        b,
        session="bench",
        workers=args.workers,
        chunk_size=args.chunk,
        truncate=args.truncate,
        transcript=transcript,
    )
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0  # workers are joined by run_local, so they are counted
    peak = _rss_mb("VmHWM:")
    correct = check(a, b, truth, res_a, res_b)
    out: dict[str, object] = {
        "size": args.size,
        "overlap": args.overlap,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "seconds": round(seconds, 2),
        "items_per_s": round(args.size / seconds),
        "ops_per_s": round(4 * args.size / seconds),
        "cpu_seconds": round(cpu, 2),
        "ops_per_cpu_s": round(4 * args.size / cpu),
        "intersection": res_a.size,
        "correct": correct,
        "wire_bytes": sum(n for _, _, n in transcript),
        "psi_peak_rss_mb": peak - rss0 if peak is not None and rss0 is not None else None,
        "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "load_avg_before": round(load_before, 2),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    print(f"fedcredit PSI: {seconds:.1f}s, correct={correct}")
    if not args.no_openmined:
        om = openmined(a, b, truth)
        if om is None:
            print("openmined.psi not importable: baseline skipped")
        else:
            out["openmined_seconds"] = round(om[0], 2)
            out["openmined_cpu_seconds"] = round(om[1], 2)
            out["openmined_correct"] = om[2]
            out["speedup_vs_openmined"] = round(om[0] / seconds, 2)
            print(f"OpenMined PSI: {om[0]:.1f}s, correct={om[2]}")
    print(json.dumps(out))
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
