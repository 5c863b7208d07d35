"""Credit-scoring metrics: AUC, KS, Gini, log-loss, PSI, confusion at a threshold.

Implemented in numpy (no scikit-learn at import) so every party and every run computes them the
same way; the tests compare against scikit-learn and hand-computed values. ``summary`` is the
dictionary every run writes to its ``metrics.json``.
"""

from __future__ import annotations

import numpy as np


def _arrays(y, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.float64).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("empty labels")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return y, s


def _roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative TPR/FPR at each distinct score threshold, highest score first (with (0,0))."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last_of_tie = np.r_[np.nonzero(np.diff(ss))[0], ys.size - 1]
    tp = np.cumsum(ys)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    pos, neg = ys.sum(), ys.size - ys.sum()
    if pos == 0 or neg == 0:
        raise ValueError("AUC/KS need both classes present")
    return np.r_[0.0, tp / pos], np.r_[0.0, fp / neg]


def auc(y, score) -> float:
    """Area under the ROC curve (ties count one half, as scikit-learn does)."""
    tpr, fpr = _roc_points(*_arrays(y, score))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def ks(y, score) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds of TPR - FPR (bad vs good score CDFs)."""
    tpr, fpr = _roc_points(*_arrays(y, score))
    return float(np.max(np.abs(tpr - fpr)))


def gini(y, score) -> float:
    """Gini (accuracy ratio) = 2 * AUC - 1, the usual scorecard figure."""
    return 2.0 * auc(y, score) - 1.0


def log_loss(y, p, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy of probabilities ``p`` (clipped to [eps, 1-eps])."""
    y, p = _arrays(y, p)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def psi(expected, actual, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Bins are the quantiles of ``expected`` (duplicate edges merged), open at both ends so every
    value of ``actual`` falls in one. Empty bins get a floor of 1e-6 so the log stays finite.
    Rule of thumb: < 0.1 stable, 0.1-0.25 some shift, > 0.25 significant shift.
    """
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if e.size == 0 or a.size == 0:
        raise ValueError("PSI needs non-empty expected and actual samples")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1))[1:-1])
    e_frac = np.bincount(np.searchsorted(edges, e, side="right"), minlength=edges.size + 1) / e.size
    a_frac = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1) / a.size
    e_frac = np.maximum(e_frac, 1e-6)
    a_frac = np.maximum(a_frac, 1e-6)
    return float(np.sum((a_frac - e_frac) * np.log(a_frac / e_frac)))


def confusion(y, score, threshold: float = 0.5) -> dict:
    """Confusion counts and rates when predicting default for ``score >= threshold``."""
    y, s = _arrays(y, score)
    pred = s >= threshold
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))
    fn = int(np.sum(~pred & pos))
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "accuracy": (tp + tn) / y.size,
    }


def summary(y, score) -> dict[str, float]:
    """``{"auc", "ks", "gini", "log_loss"}``; scores outside [0, 1] are squashed by a sigmoid for log-loss."""
    y_, s = _arrays(y, score)
    p = s if (s.min() >= 0.0 and s.max() <= 1.0) else 1.0 / (1.0 + np.exp(-s))
    a = auc(y_, s)
    return {"auc": a, "ks": ks(y_, s), "gini": 2.0 * a - 1.0, "log_loss": log_loss(y_, p)}
