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
    """Signed-log1p on heavy-tailed non-negative-ish columns, then z-score (train statistics).

    ``keep_missing`` (SecureBoost, which learns where missing values go at every split): statistics
    ignore empty cells and ``transform`` leaves them NaN; otherwise ``fit`` refuses them, naming the
    row and column (a linear model needs the WOE encoding of ``mode = "scorecard"``).
    ``passthrough`` columns (declared categorical: level codes) are left exactly as they are.
    """

    log_columns: np.ndarray | None = None  # bool mask
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    keep_missing: bool = False
    passthrough: np.ndarray | None = None  # bool mask, None = no column

    def fit(
        self, X: np.ndarray, feature_names: list[str] | None = None, *, passthrough: list[bool] | None = None
    ) -> LocalPreprocessor:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
        bad_cells = np.isinf(X) if self.keep_missing else ~np.isfinite(X)
        if bad_cells.any():
            bad = np.argwhere(bad_cells)[0]
            name = feature_names[bad[1]] if feature_names else str(bad[1])
            what = "an infinite" if self.keep_missing else "a missing or non-finite"
            hint = "" if self.keep_missing else " (SecureBoost and the scorecard take missing values; LR does not)"
            raise ValueError(f"{what} value in training row {bad[0]}, column {name!r}{hint}")
        k = X.shape[1]
        self.passthrough = np.zeros(k, dtype=bool) if passthrough is None else np.asarray(passthrough, dtype=bool)
        if self.passthrough.shape != (k,):
            raise ValueError(f"passthrough mask for {self.passthrough.size} columns, X has {k}")
        self.log_columns = np.array(
            [not self.passthrough[j] and _heavy_tailed(X[~np.isnan(X[:, j]), j]) for j in range(k)], dtype=bool
        )
        Z = self._log(X)
        with np.errstate(invalid="ignore"):  # an all-missing column: mean 0, scale 1
            mean = np.nanmean(Z, axis=0) if k and len(Z) else np.zeros(k)
            sd = np.nanstd(Z, axis=0) if k and len(Z) else np.ones(k)
        mean, sd = np.nan_to_num(mean), np.nan_to_num(sd)
        self.mean = np.where(self.passthrough, 0.0, mean)
        self.scale = np.where(self.passthrough | ~(sd > 0), 1.0, sd)
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
        if self.keep_missing:
            return np.where(np.isnan(X), np.nan, np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0))
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self) -> dict:
        assert self.log_columns is not None and self.mean is not None and self.scale is not None
        d = {"log_columns": self.log_columns.tolist(), "mean": self.mean.tolist(), "scale": self.scale.tolist()}
        if self.keep_missing:
            d["keep_missing"] = True
        if self.passthrough is not None and self.passthrough.any():
            d["passthrough"] = self.passthrough.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LocalPreprocessor:
        k = len(d["mean"])
        return cls(
            np.array(d["log_columns"], dtype=bool),
            np.array(d["mean"]),
            np.array(d["scale"]),
            keep_missing=bool(d.get("keep_missing", False)),
            passthrough=np.array(d.get("passthrough", [False] * k), dtype=bool),
        )


def _heavy_tailed(col: np.ndarray) -> bool:
    """Many distinct values, mostly non-negative, strongly right-skewed: a money amount."""
    if col.size == 0:
        return False
    if np.unique(col[: min(len(col), 5000)]).size < 20:
        return False  # codes, flags, grades, counts with few levels: leave linear
    if (col < 0).mean() > 0.2:
        return False
    sd = col.std()
    if sd == 0:
        return False
    skew = float(np.mean(((col - col.mean()) / sd) ** 3))
    return abs(skew) > HEAVY_TAIL_SKEW
