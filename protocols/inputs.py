"""Input hygiene shared by the protocol parties: feature matrices checked at the party boundary."""

from __future__ import annotations

import numpy as np


def as_features(X: np.ndarray | None, who: str, what: str, n_cols: int | None = None) -> np.ndarray | None:
    """``X`` as a contiguous float64 matrix, or a ValueError naming the party, the input and the cell."""
    if X is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{who}: {what} must be a 2-D matrix, got shape {X.shape}")
    if n_cols is not None and X.shape[1] != n_cols:
        raise ValueError(f"{who}: {what} has {X.shape[1]} columns, the training data has {n_cols}")
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{who}: {what} has a non-finite value at row {r}, column {c}")
    return np.ascontiguousarray(X)
