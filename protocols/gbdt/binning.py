"""Quantile binning, fitted locally by each party on its own training features.

Why bins: gradient-boosted trees only ever compare a feature with a threshold, so every
feature can be replaced by a small bin index (at most 256, usually 32) before training.
In SecureBoost this is what keeps the encrypted work bounded: the host adds ciphertexts into
``n_bins`` buckets per feature, and the guest learns at most ``n_bins - 1`` candidate splits
per feature and node, never a raw value. Each party bins its own columns with its own data;
the thresholds never leave the party that owns the feature.

Convention (shared with the plaintext reference :mod:`protocols.gbdt.plain`): feature ``j``
has increasing thresholds ``t_0 < t_1 < ...``; a value ``x`` falls in bin ``b`` = the number of
thresholds strictly below ``x``; the split "bin <= b" is exactly "x <= t_b", so a tree
trained on bins predicts identically on raw values.

Thresholds: a feature with at most ``max_bins`` distinct values gets one bin per value
(thresholds at midpoints between consecutive distinct values); otherwise thresholds are the
``max_bins``-quantiles of the column (midpoint interpolation), de-duplicated.

Missing values (NaN; issue 17): a column with missing training values gets one more threshold,
:data:`MISSING_THRESHOLD` (the largest float), so every value falls at or below it and NaN --
which ``searchsorted`` places after everything -- gets a bin of its own, the last. The split
"bin <= last value bin" then isolates the missing rows, and every other split sends them right;
on raw values ``NaN <= t`` is false, i.e. right as well, so binned and raw predictions still
agree. A column without missing training values sends a NaN met at prediction time right too.

Categorical columns (issue 17; declared by the caller, values are level codes): the thresholds
are the column's distinct training codes themselves, and a value's bin is the index of its code
(exact match); a code never seen in training falls in the bin after the last code, which no
training row occupies and so no split ever sends left. The missing bin follows as for any column.
Splits on such a column are level sets, not thresholds (``protocols.gbdt.plain``, section
"categorical columns").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protocols.common.inputs import as_features

MAX_BINS_LIMIT = 256  # bin indices are uint8
MISSING_THRESHOLD = float(np.finfo(np.float64).max)  # the threshold that gives NaN its own bin


class BinningError(ValueError):
    """Features that cannot be binned (non-finite values, wrong shape); names the column."""


def _check_matrix(X: np.ndarray, what: str, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 matrix (the checks of :func:`protocols.common.inputs.as_features`)."""
    try:
        checked = as_features(X, what, "the feature matrix", n_features, allow_nan=True)
    except ValueError as exc:
        hint = " (infinite values are not allowed; NaN counts as missing)" if "non-finite" in str(exc) else ""
        raise BinningError(f"{exc}{hint}") from None
    if checked is None:
        raise BinningError(f"{what}: no feature matrix given")
    return checked


@dataclass
class BinEdges:
    """Per-feature split thresholds: ``thresholds[j]`` is increasing, ``n_bins[j] - 1`` long."""

    thresholds: list[np.ndarray]
    categorical: frozenset[int] = frozenset()  # columns whose thresholds are level codes

    @property
    def n_features(self) -> int:
        return len(self.thresholds)

    @property
    def n_bins(self) -> np.ndarray:
        return np.array([t.size + 1 for t in self.thresholds], dtype=np.int64)

    @property
    def max_n_bins(self) -> int:
        return int(self.n_bins.max()) if self.thresholds else 1

    def transform(self, X: np.ndarray, *, what: str = "features") -> np.ndarray:
        """Bin indices (``uint8``, shape ``(n_rows, n_features)``) of raw features ``X``."""
        X = _check_matrix(X, what, self.n_features)
        out = np.empty(X.shape, dtype=np.uint8)
        for j, t in enumerate(self.thresholds):
            out[:, j] = np.searchsorted(t, X[:, j], side="left")
            if j in self.categorical:
                out[:, j] = self._level_bins(j, X[:, j])
        return out

    def _level_bins(self, j: int, x: np.ndarray) -> np.ndarray:
        """Bins of categorical column ``j``: the code's index; unseen codes the unoccupied bin after them."""
        t = self.thresholds[j]
        codes = t[:-1] if t.size and t[-1] == MISSING_THRESHOLD else t
        idx = np.searchsorted(codes, x, side="left")
        seen = (idx < codes.size) & (codes[np.minimum(idx, max(codes.size - 1, 0))] == x) if codes.size else idx < 0
        out = np.where(seen, idx, codes.size)
        if codes.size < t.size:
            out = np.where(np.isnan(x), t.size, out)  # the missing bin
        return out

    def levels(self, feature: int, bins: np.ndarray) -> np.ndarray:
        """The level codes of bins of a categorical column (the missing bin and unseen bin have none)."""
        t = self.thresholds[feature]
        codes = t[:-1] if t.size and t[-1] == MISSING_THRESHOLD else t
        b = np.asarray(bins, dtype=np.int64)
        return np.sort(codes[b[b < codes.size]])

    def threshold(self, feature: int, bin_index: int) -> float:
        """The raw-value threshold of the split "bin <= bin_index" on ``feature``."""
        return float(self.thresholds[feature][bin_index])

    # -- node-local persistence ------------------------------------------------------------
    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(all thresholds concatenated, per-feature counts): for party state, never the wire.

        A categorical column's count is stored as ``-(count + 1)`` (so the pair stays two arrays).
        """
        flat = np.concatenate(self.thresholds) if self.thresholds else np.zeros(0)
        sizes = [-(t.size + 1) if j in self.categorical else t.size for j, t in enumerate(self.thresholds)]
        return flat.astype(np.float64), np.array(sizes, dtype=np.int64)

    @classmethod
    def from_arrays(cls, flat: np.ndarray, sizes: np.ndarray) -> BinEdges:
        sizes = np.asarray(sizes, dtype=np.int64)
        cats = frozenset(int(j) for j in np.flatnonzero(sizes < 0))
        sizes = np.where(sizes < 0, -sizes - 1, sizes)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls(
            [np.asarray(flat[bounds[j] : bounds[j + 1]], dtype=np.float64).copy() for j in range(len(sizes))], cats
        )


def fit_bins(X: np.ndarray, max_bins: int = 32, *, what: str = "features", categorical: Sequence[int] = ()) -> BinEdges:
    """Quantile thresholds for every column of ``X``; level codes for ``categorical`` columns (module docstring)."""
    if not 2 <= max_bins <= MAX_BINS_LIMIT:
        raise BinningError(f"max_bins must be in [2, {MAX_BINS_LIMIT}], got {max_bins}")
    X = _check_matrix(X, what)
    if X.shape[0] == 0:
        raise BinningError(f"{what}: no rows to fit bins on")
    cats = frozenset(int(j) for j in categorical)
    if any(not 0 <= j < X.shape[1] for j in cats):
        raise BinningError(f"{what}: categorical columns {sorted(cats)} outside [0, {X.shape[1]})")
    thresholds = []
    for j in range(X.shape[1]):
        full = X[:, j]
        missing = np.isnan(full)
        col = full[~missing]
        distinct = np.unique(col)
        value_bins = max_bins - int(missing.any())  # the missing bin counts towards max_bins
        if j in cats:
            # one bin per level plus the never-occupied "unseen level" bin
            if distinct.size + 1 > value_bins:
                raise BinningError(
                    f"{what}: categorical column {j} has {distinct.size} levels, at most {value_bins - 1} fit "
                    f"in max_bins={max_bins} (raise max_bins or merge rare levels)"
                )
            t = distinct
        elif distinct.size == 0:
            t = np.zeros(0)
        elif distinct.size <= value_bins:
            t = (distinct[:-1] + distinct[1:]) / 2.0
        else:
            percentiles = np.linspace(0.0, 100.0, value_bins + 1)[1:-1]
            t = np.unique(np.percentile(col, percentiles, method="midpoint"))
            # a threshold at the column maximum would make an always-empty last bin
            t = t[t < distinct[-1]]
        if missing.any():
            t = np.append(t, MISSING_THRESHOLD)
        thresholds.append(np.ascontiguousarray(t, dtype=np.float64))
    return BinEdges(thresholds, cats)
