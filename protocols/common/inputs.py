"""Input hygiene shared by the protocol parties: feature matrices checked at the party boundary."""

from __future__ import annotations

from typing import overload

import numpy as np


@overload
def as_features(
    X: np.ndarray, who: str, what: str, n_cols: int | None = None, *, allow_nan: bool = False
) -> np.ndarray: ...
@overload
def as_features(X: None, who: str, what: str, n_cols: int | None = None, *, allow_nan: bool = False) -> None: ...
@overload
def as_features(
    X: np.ndarray | None, who: str, what: str, n_cols: int | None = None, *, allow_nan: bool = False
) -> np.ndarray | None: ...
def as_features(
    X: np.ndarray | None, who: str, what: str, n_cols: int | None = None, *, allow_nan: bool = False
) -> np.ndarray | None:
    """``X`` as a contiguous float64 matrix, or a ValueError naming the party, the input and the cell.

    ``allow_nan`` lets NaN through as "missing" (for protocols with a missing bin); +-inf never passes.
    """
    if X is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{who}: {what} must be a 2-D matrix, got shape {X.shape}")
    if n_cols is not None and X.shape[1] != n_cols:
        raise ValueError(f"{who}: {what} has {X.shape[1]} columns, the training data has {n_cols}")
    bad = np.isinf(X) if allow_nan else ~np.isfinite(X)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{who}: {what} has a non-finite value at row {r}, column {c}")
    return np.ascontiguousarray(X)


@overload
def as_labels(y: np.ndarray, n: int, who: str, what: str, *, signed: bool) -> np.ndarray: ...
@overload
def as_labels(y: None, n: int, who: str, what: str, *, signed: bool) -> None: ...
@overload
def as_labels(y: np.ndarray | None, n: int, who: str, what: str, *, signed: bool) -> np.ndarray | None: ...
def as_labels(y: np.ndarray | None, n: int, who: str, what: str, *, signed: bool) -> np.ndarray | None:
    """Binary labels as float64, ``{-1, +1}`` when ``signed`` else ``{0, 1}``; accepts either
    spelling on input. A ValueError names the party, the input and what is wrong."""
    if y is None:
        return None
    y = np.asarray(y).ravel()
    if y.shape[0] != n:
        raise ValueError(f"{who}: {what} has {y.shape[0]} labels for {n} rows")
    vals = set(np.unique(y).tolist())
    if vals <= {0, 1}:
        positive = y == 1
    elif signed and vals <= {-1, 1}:
        positive = y == 1
    else:
        spelling = "0/1 (or -1/+1)" if signed else "0/1"
        raise ValueError(f"{who}: {what} must be {spelling}, found values {sorted(vals)[:5]}")
    return np.where(positive, 1.0, -1.0 if signed else 0.0)
