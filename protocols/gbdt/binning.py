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
"""

from __future__ import annotations

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
        return out

    def threshold(self, feature: int, bin_index: int) -> float:
        """The raw-value threshold of the split "bin <= bin_index" on ``feature``."""
        return float(self.thresholds[feature][bin_index])

    # -- node-local persistence ------------------------------------------------------------
    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(all thresholds concatenated, per-feature counts): for party state, never the wire."""
        flat = np.concatenate(self.thresholds) if self.thresholds else np.zeros(0)
        return flat.astype(np.float64), np.array([t.size for t in self.thresholds], dtype=np.int64)

    @classmethod
    def from_arrays(cls, flat: np.ndarray, sizes: np.ndarray) -> BinEdges:
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls([np.asarray(flat[bounds[j] : bounds[j + 1]], dtype=np.float64).copy() for j in range(len(sizes))])


def fit_bins(X: np.ndarray, max_bins: int = 32, *, what: str = "features") -> BinEdges:
    """Quantile thresholds for every column of ``X`` (see the module docstring)."""
    if not 2 <= max_bins <= MAX_BINS_LIMIT:
        raise BinningError(f"max_bins must be in [2, {MAX_BINS_LIMIT}], got {max_bins}")
    X = _check_matrix(X, what)
    if X.shape[0] == 0:
        raise BinningError(f"{what}: no rows to fit bins on")
    thresholds = []
    for j in range(X.shape[1]):
        full = X[:, j]
        missing = np.isnan(full)
        col = full[~missing]
        distinct = np.unique(col)
        value_bins = max_bins - int(missing.any())  # the missing bin counts towards max_bins
        if distinct.size == 0:
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
    return BinEdges(thresholds)
