"""Local feature preprocessing: each party fits it on its own training rows, on its own node.

Credit data is full of heavy-tailed money amounts (bill and payment amounts, tax paid, invoice
totals, registered capital). A linear model on raw z-scores lets a few huge values dominate;
``sign(x) * log1p(|x|)`` on those columns, then z-scoring, is standard credit-scoring practice.
It matters more here than usually: the Paillier protocols use a Taylor approximation of the
logistic loss, which on raw z-scores behaves like least squares and loses ~0.006 AUC on
default_credit, while on log-compressed amounts it matches exact logistic regression
(measured: 0.739 vs 0.738). Nothing about the transform crosses the party boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEAVY_TAIL_SKEW = 2.0


@dataclass
class LocalPreprocessor:
    """Signed-log1p on heavy-tailed non-negative-ish columns, then z-score (train statistics)."""

    log_columns: np.ndarray | None = None  # bool mask
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, X: np.ndarray, feature_names: list[str] | None = None) -> LocalPreprocessor:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            bad = np.argwhere(~np.isfinite(X))[0]
            name = feature_names[bad[1]] if feature_names else str(bad[1])
            raise ValueError(f"non-finite value in training row {bad[0]}, column {name!r}")
        self.log_columns = np.array([_heavy_tailed(X[:, j]) for j in range(X.shape[1])], dtype=bool)
        Z = self._log(X)
        self.mean = Z.mean(axis=0)
        sd = Z.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)
        return self

    def _log(self, X: np.ndarray) -> np.ndarray:
        assert self.log_columns is not None
        Z = np.array(X, dtype=np.float64, copy=True)
        cols = self.log_columns
        Z[:, cols] = np.sign(Z[:, cols]) * np.log1p(np.abs(Z[:, cols]))
        return Z

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.mean is None or self.scale is None:
            raise RuntimeError("LocalPreprocessor.transform called before fit")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected {self.mean.shape[0]} feature columns, got shape {X.shape}")
        out = (self._log(X) - self.mean) / self.scale
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self) -> dict:
        assert self.log_columns is not None and self.mean is not None and self.scale is not None
        return {"log_columns": self.log_columns.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> LocalPreprocessor:
        return cls(np.array(d["log_columns"], dtype=bool), np.array(d["mean"]), np.array(d["scale"]))


def _heavy_tailed(col: np.ndarray) -> bool:
    """Many distinct values, mostly non-negative, strongly right-skewed: a money amount."""
    if np.unique(col[: min(len(col), 5000)]).size < 20:
        return False  # codes, flags, grades, counts with few levels: leave linear
    if (col < 0).mean() > 0.2:
        return False
    sd = col.std()
    if sd == 0:
        return False
    skew = float(np.mean(((col - col.mean()) / sd) ** 3))
    return abs(skew) > HEAVY_TAIL_SKEW
