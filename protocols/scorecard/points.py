"""Scorecard scaling: from LR on WOE to points, and the tables a model risk team asks for.

With ``logit(p_bad) = b0 + sum_j b_j WOE_j`` and good:bad odds ``o = (1 - p) / p``, a score is
``offset + factor * ln(o)`` where ``factor = PDO / ln 2`` (every PDO points double the odds) and
``offset = base_score - factor * ln(base_odds)`` (``base_score`` points at odds
``base_odds``:1). Hence ``score = base_points + sum_j points_j(bin)`` with
``base_points = offset - factor * b0`` and ``points_j(bin) = -factor * b_j * WOE_j(bin)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreScale:
    """``base_score`` points at good:bad odds ``base_odds``; ``pdo`` points double the odds."""

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    def __post_init__(self) -> None:
        if self.base_odds <= 0 or self.pdo <= 0:
            raise ValueError(f"base_odds and pdo must be positive, got {self.base_odds}, {self.pdo}")

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def base_points(self, intercept: float) -> float:
        return self.offset - self.factor * intercept

    def points(self, woe: np.ndarray, coef: float) -> np.ndarray:
        """Points of each bin of one column."""
        return -self.factor * coef * np.asarray(woe, dtype=np.float64)

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """Probability of default at each score."""
        return 1.0 / (1.0 + np.exp((np.asarray(scores, dtype=np.float64) - self.offset) / self.factor))

    def score(self, p_bad: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p_bad, dtype=np.float64), 1e-12, 1 - 1e-12)
        return self.offset + self.factor * np.log((1 - p) / p)


def probability_table(scale: ScoreScale, lo: float = 300.0, hi: float = 900.0, step: float = 20.0) -> list[dict]:
    """Score -> probability of default and odds, every ``step`` points."""
    scores = np.arange(lo, hi + step / 2, step)
    p = scale.probability(scores)
    return [{"score": float(s), "p_default": float(q), "odds_good_bad": float((1 - q) / q)} for s, q in zip(scores, p)]


def score_bands(scores: np.ndarray, y: np.ndarray, n_bands: int = 10) -> list[dict]:
    """Equal-count score bands (lowest first): count, bads, bad rate, cumulative shares and KS.

    KS of a band is ``|cum. share of bads - cum. share of goods|`` up to and including it, from
    the riskiest (lowest) scores up; the largest is the scorecard's KS.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if s.shape != y.shape or s.size == 0:
        raise ValueError("scores and labels must be non-empty and of the same length")
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bands + 1)))
    band = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    n_b = max(len(edges) - 1, 1)
    count = np.bincount(band, minlength=n_b)
    bads = np.bincount(band, weights=y, minlength=n_b).astype(np.int64)
    goods = count - bads
    tb, tg = max(int(bads.sum()), 1), max(int(goods.sum()), 1)
    cb, cg = np.cumsum(bads) / tb, np.cumsum(goods) / tg
    out = []
    for b in range(n_b):
        out.append(
            {
                "band": b + 1,
                "score_from": float(edges[b]),
                "score_to": float(edges[min(b + 1, len(edges) - 1)]),
                "count": int(count[b]),
                "bads": int(bads[b]),
                "bad_rate": float(bads[b] / count[b]) if count[b] else 0.0,
                "cum_bad_share": float(cb[b]),
                "cum_good_share": float(cg[b]),
                "ks": float(abs(cb[b] - cg[b])),
            }
        )
    return out


def population_stability(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum (a - e) ln(a / e) over bins, from the bin *counts* of two samples (0.0001 floor)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("PSI needs two non-empty count vectors of the same bins")
    pe = np.maximum(e / e.sum(), 1e-4)
    pa = np.maximum(a / a.sum(), 1e-4)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def stability_verdict(psi: float, warn: float = 0.1, alert: float = 0.25) -> str:
    """The usual reading: below 0.1 stable, 0.1-0.25 some shift (watch), above 0.25 shifted (act)."""
    return "stable" if psi < warn else ("watch" if psi < alert else "shifted")
