"""Process and thread pools for the Paillier hot loops, created lazily and only for large inputs.

Why two kinds of pool: gmpy2's ``powmod_base_list`` releases the GIL, so batch decryption
(one fixed exponent, many bases) scales across cores with plain threads and no copying; the
fixed-base table walks and the Pippenger buckets are chains of small gmpy2 multiplications
that hold the GIL, so they need processes. Workers receive the table parameters as numbers
(the base ``hs`` and the moduli; never key objects) and build each fixed-base table once per
process (:func:`protocols.paillier.fixed_base.cached_table`); the private key's prime squares
only travel over the local pipe to this node's own worker processes.

Knobs: ``workers=`` on every vector operation; the process-wide default comes from
``FEDCREDIT_PAILLIER_WORKERS`` (``1`` disables parallelism) or ``os.cpu_count()``; the start
method from ``FEDCREDIT_MP_START`` (default ``forkserver``, which is safe inside
multi-threaded hosts such as Flower/gRPC where ``fork`` is not). Inputs below the thresholds
in :data:`THRESHOLDS` run serially: a process round trip costs milliseconds, and the first
use pays pool start-up (~0.5 s) plus a table build per key in each worker.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Minimum input sizes (items) before an operation goes parallel.
THRESHOLDS: dict[str, int] = {
    "encrypt": 2048,  # obfuscators: ~70-200 us each
    "decrypt": 32,  # ~3-4 ms each (threads, no start-up cost)
    "dot": 4096,  # rows (x columns >= 1): ~2 mulmods per row per column
    "mul_plain": 2048,
}

_lock = threading.Lock()
_process_pools: dict[int, ProcessPoolExecutor] = {}
_thread_pools: dict[int, ThreadPoolExecutor] = {}
_broken = False


def default_workers() -> int:
    """``FEDCREDIT_PAILLIER_WORKERS`` or the core count; 1 inside a worker process (no nested pools)."""
    env = os.environ.get("FEDCREDIT_PAILLIER_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("ignoring FEDCREDIT_PAILLIER_WORKERS=%r (not an integer)", env)
    if multiprocessing.parent_process() is not None:
        return 1
    return os.cpu_count() or 1


def resolve_workers(workers: int | None, n_items: int, kind: str) -> int:
    """Workers to use for ``n_items`` of operation ``kind`` (1 = serial)."""
    w = default_workers() if workers is None else max(1, int(workers))
    if w <= 1 or n_items < THRESHOLDS.get(kind, 0):
        return 1
    return min(w, n_items)


def process_pool(workers: int) -> Executor | None:
    """The shared process pool with ``workers`` processes, or ``None`` if processes are unavailable
    (e.g. inside a daemonic worker); callers then fall back to serial execution."""
    global _broken
    if _broken:
        return None
    with _lock:
        pool = _process_pools.get(workers)
        if pool is None:
            method = os.environ.get("FEDCREDIT_MP_START", "forkserver")
            try:
                ctx = multiprocessing.get_context(method)
                if multiprocessing.current_process().daemon:
                    raise RuntimeError("daemonic processes cannot start a pool")
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            except Exception as exc:  # noqa: BLE001  # pragma: no cover - platform dependent
                log.warning("Paillier process pool unavailable (%s); running serially", exc)
                _broken = True
                return None
            _process_pools[workers] = pool
        return pool


def thread_pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _thread_pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paillier")
            _thread_pools[workers] = pool
        return pool


def shutdown() -> None:
    """Stop every pool this module started (also runs at interpreter exit)."""
    with _lock:
        for pool in _process_pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for tpool in _thread_pools.values():
            tpool.shutdown(wait=True)
        _process_pools.clear()
        _thread_pools.clear()


atexit.register(shutdown)


def split(n_items: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``(start, stop)`` ranges covering ``range(n_items)``."""
    parts = max(1, min(parts, n_items))
    step, extra = divmod(n_items, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + step + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def map_processes(fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], workers: int) -> list[T] | None:
    """``[fn(*t) for t in tasks]`` in the process pool, in order; ``None`` if no pool is available."""
    maybe_pool = process_pool(workers)
    if maybe_pool is None:
        return None
    pool: Executor = maybe_pool
    try:
        futures = [pool.submit(fn, *t) for t in tasks]
        return [f.result() for f in futures]
    except BrokenProcessPool as exc:  # a worker died (e.g. killed for memory): drop the pool, go serial
        log.warning("Paillier worker pool broke (%s); recomputing serially", exc)
        with _lock:
            if _process_pools.get(workers) is pool:
                del _process_pools[workers]
        pool.shutdown(wait=False, cancel_futures=True)
        return None


def map_threads(fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]], workers: int) -> list[T]:
    pool = thread_pool(workers)
    futures = [pool.submit(fn, *t) for t in tasks]
    return [f.result() for f in futures]
