"""Process-pool tasks for the Paillier hot loops, and the serial kernels they share with the caller.

Why: the fixed-base table walks and the Pippenger buckets are chains of small gmpy2
multiplications that hold the GIL, so large inputs are split across worker processes
(:mod:`protocols.common.parallel`). Tasks receive plain numbers, never key objects: a worker
looks its tables up in the per-process :func:`cached_table`, so each worker builds them once per
key. The key owner's ``p^2``/``q^2`` only travel over the local pipe to this node's own workers.
Every task gives exactly what the serial path gives (obfuscators are random either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.common import parallel
from protocols.paillier.fixed_base import cached_table, crt_random_powers
from protocols.paillier.multiexp import multi_exponentiate

__all__ = ["dot_chunk", "mul_plain_chunk", "obfuscators_in_processes", "owner_obfuscators", "public_obfuscators"]


def obfuscators_in_processes(
    task: Callable[..., list[mpz]], args: tuple[object, ...], count: int, workers: int | None
) -> list[mpz] | None:
    """``count`` obfuscators from ``task(*args, share)`` split over worker processes.

    ``None`` when ``count`` is below the parallel threshold or no process pool is available: the
    caller then computes them serially with the tables it already holds.
    """
    w = parallel.resolve_workers(workers, count, "encrypt")
    if w <= 1:
        return None
    parts = parallel.map_processes(task, [(*args, b - a) for a, b in parallel.split(count, w)], w)
    if parts is None:
        return None
    return [r for part in parts for r in part]


def public_obfuscators(hs: mpz, nsquare: mpz, exponent_bits: int, window: int, count: int) -> list[mpz]:
    """``count`` fresh ``hs^a mod n^2`` (the public-key path)."""
    return cached_table(hs, nsquare, exponent_bits, window).random_powers(count)


def owner_obfuscators(
    hs: mpz, psquare: mpz, qsquare: mpz, psq_inv_mod_qsq: mpz, exponent_bits: int, window: int, count: int
) -> list[mpz]:
    """``count`` fresh ``hs^a mod n^2`` computed mod ``p^2`` and ``q^2`` (the key owner's CRT path)."""
    tp = cached_table(hs % psquare, psquare, exponent_bits, window)
    tq = cached_table(hs % qsquare, qsquare, exponent_bits, window)
    return crt_random_powers(tp, tq, psq_inv_mod_qsq, count)


def mul_plain_chunk(nsq: mpz, cts: Sequence[mpz], ks: Sequence[mpz]) -> list[mpz]:
    """``c_i^{k_i} mod n^2`` (gmpy2 inverts for ``k < 0``)."""
    powmod = gmpy2.powmod
    return [powmod(c, k, nsq) for c, k in zip(cts, ks)]


def dot_chunk(nsq: mpz, cts: Sequence[mpz], X: np.ndarray) -> list[mpz]:
    """``prod_i c_i^{X_ij} mod n^2`` for every column ``j`` of ``X``."""
    return [multi_exponentiate(cts, X[:, j], nsq) for j in range(X.shape[1])]
