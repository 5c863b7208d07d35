"""The batch schedule and class weights both parties derive on their own, identically.

Pure functions of shared settings and row counts: neither party sends the other its batches,
each recomputes them from the seed agreed in the hello, so the schedule itself never travels.
"""

from __future__ import annotations

import numpy as np

from protocols.hetero_lr.config import MIN_BATCH_ROWS, HeteroLRConfigError

ROWS_PER_FEATURE = 4  # batch rows >= 4x the larger party's gradient length


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """``n // batch_size`` batches (at least one): the remainder is spread, never a tiny batch."""
    return max(1, n_rows // batch_size)


def batch_schedule(n_rows: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices (common PSI order) of each batch of ``epoch``: a seeded shuffle split evenly.

    Every batch has between ``batch_size`` and ``2 * batch_size - 1`` rows (or all rows when
    ``n_rows < batch_size``), so no gradient is ever an aggregate over a handful of rows.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n_rows)
    return np.array_split(perm, batches_per_epoch(n_rows, batch_size))


def min_batch_rows(n_rows: int, batch_size: int) -> int:
    """Rows in the smallest batch of the schedule."""
    return n_rows // batches_per_epoch(n_rows, batch_size)


def required_batch_rows(n_bank_features: int, n_centre_features: int) -> int:
    """Fewest rows a batch may have: a gradient over fewer rows than ~its length reveals residuals."""
    return max(MIN_BATCH_ROWS, ROWS_PER_FEATURE * max(n_bank_features + 1, n_centre_features))


def balanced_class_weights(y01: np.ndarray) -> dict[int, float]:
    """scikit-learn's "balanced": ``n / (2 n_k)`` (mean weight 1 over the training rows)."""
    n = len(y01)
    pos = int(np.sum(y01 == 1))
    if pos == 0 or pos == n:
        raise HeteroLRConfigError("[lr] class_weight = 'balanced' needs both classes in the training labels")
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}
