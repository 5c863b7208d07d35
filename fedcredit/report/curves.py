"""The numbers behind the report's quality plots, in numpy (vectorised, no plotting here).

Kept apart from the plots so the tests can check them against independent references
(scikit-learn's ``roc_curve``, hand-counted bands) without drawing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_probability(score: np.ndarray) -> np.ndarray:
    """Scores as default probabilities: kept if already in [0, 1], else squashed by a sigmoid."""
    s = np.asarray(score, dtype=np.float64)
    if s.size and s.min() >= 0.0 and s.max() <= 1.0:
        return s
    return 1.0 / (1.0 + np.exp(-s))


def roc(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, highest score first, starting at (0, 0)."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    ys, ss = y[order], np.asarray(score, dtype=np.float64)[order]
    last = np.r_[np.nonzero(np.diff(ss))[0], ys.size - 1]
    tp = np.cumsum(ys)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / max(fp[-1], 1.0)], np.r_[0.0, tp / max(tp[-1], 1.0)]


@dataclass(frozen=True)
class KsCurve:
    """Cumulative share of bads and of goods below each score threshold, and where they part most."""

    threshold: np.ndarray
    bad_cdf: np.ndarray
    good_cdf: np.ndarray
    ks: float
    at: float


def ks_curve(y: np.ndarray, score: np.ndarray) -> KsCurve:
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.nonzero(np.diff(ss))[0], ys.size - 1]
    bad = np.cumsum(ys)[last] / max(ys.sum(), 1.0)
    good = np.cumsum(1.0 - ys)[last] / max((1.0 - ys).sum(), 1.0)
    gap = np.abs(good - bad)
    i = int(np.argmax(gap))
    return KsCurve(ss[last], bad, good, float(gap[i]), float(ss[last][i]))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed bad rate, rows) per quantile bin of the predicted probability."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = _quantile_bins(p, bins)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    keep = n > 0
    pred = np.bincount(idx, weights=p, minlength=bins)[keep] / n[keep]
    obs = np.bincount(idx, weights=y, minlength=bins)[keep] / n[keep]
    return pred, obs, n[keep].astype(np.int64)


def gains(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share of population, share of bads captured, lift) taking rows riskiest first."""
    y = np.asarray(y, dtype=np.float64)
    ys = y[np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")]
    pop = np.arange(1, ys.size + 1) / ys.size
    captured = np.cumsum(ys) / max(ys.sum(), 1.0)
    lift = captured / pop
    return np.r_[0.0, pop], np.r_[0.0, captured], np.r_[lift[0], lift]


@dataclass(frozen=True)
class Band:
    """One score band (decile, riskiest first) of the test rows."""

    band: int
    low: float
    high: float
    rows: int
    bads: int
    bad_rate: float
    cumulative_bad_rate: float


def score_bands(y: np.ndarray, score: np.ndarray, bands: int = 10) -> list[Band]:
    """Quantile bands of the score, riskiest (highest score) first, with their bad rates."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    idx = (bands - 1) - _quantile_bins(s, bands)  # band 0 = highest scores
    out: list[Band] = []
    cum_rows = cum_bads = 0
    for b in range(bands):
        m = idx == b
        rows, bads = int(m.sum()), int(y[m].sum())
        if rows == 0:
            continue
        cum_rows += rows
        cum_bads += bads
        out.append(Band(b + 1, float(s[m].min()), float(s[m].max()), rows, bads, bads / rows, cum_bads / cum_rows))
    return out


def _quantile_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index 0..bins-1 of each value by rank (ties split evenly, so bins stay equal-sized)."""
    ranks = np.argsort(np.argsort(values, kind="mergesort"), kind="mergesort")
    return np.minimum((ranks * bins) // max(values.size, 1), bins - 1).astype(np.int64)
