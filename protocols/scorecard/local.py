"""The whole scorecard chain in one process: federated binning, WOE, two-party LR, points.

Every step is the real protocol through the wire encoding (:func:`run_local`), so what this
module computes is what two nodes would; it only saves the relay. The Flower wiring calls the
same parties step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protocols.binning.bank import BinningBank
from protocols.binning.centre import BinningCentre
from protocols.binning.config import BinningConfig
from protocols.binning.fine import NUMERIC, ColumnBins
from protocols.binning.woe import ColumnWoe
from protocols.common.party import run_local
from protocols.hetero_lr.bank import BankLR
from protocols.hetero_lr.centre import CentreLR
from protocols.hetero_lr.config import HeteroLRConfig
from protocols.scorecard.points import ScoreScale


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def describe_bins(cb: ColumnBins, cw: ColumnWoe, level_names: list[str] | None = None) -> list[str]:
    """Human-readable text of each final bin (``[a, b)``, level lists, ``missing``)."""
    n_final = cw.woe.size
    parts: list[list[str]] = [[] for _ in range(n_final)]
    if cb.kind == NUMERIC:
        lo = [-np.inf, *cb.edges]
        hi = [*cb.edges, np.inf]
        spans: dict[int, list[float]] = {}
        for f in range(cb.n_value_bins):
            g = int(cw.group[f])
            if g >= 0:
                s = spans.setdefault(g, [lo[f], hi[f]])
                s[0], s[1] = min(s[0], lo[f]), max(s[1], hi[f])
        for g, (a, b) in spans.items():
            parts[g].append(f"[{_fmt(a)}, {_fmt(b)})")
    else:
        names = level_names or [str(i) for i in range(len(cb.level_bin))]
        for level, fine in enumerate(cb.level_bin):
            g = int(cw.group[fine])
            if g >= 0:
                parts[g].append(names[level] if level < len(names) else str(level))
    gm = int(cw.group[cb.missing_bin])
    if gm >= 0:
        parts[gm].append("missing")
    if cb.missing_into >= 0:
        parts[int(cw.group[cb.missing_into])].append("missing")
    return [", ".join(p) if p else "(empty)" for p in parts]


@dataclass
class PointsTable:
    """One party's points for its own columns: rows of (column, bin, WOE, coefficient, points)."""

    party: str
    rows: list[dict] = field(default_factory=list)
    _points: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def add(self, column: str, texts: list[str], cw: ColumnWoe, coef: float, scale: ScoreScale) -> None:
        pts = scale.points(cw.woe, coef)
        self._points[column] = pts
        for b, (text, w, p) in enumerate(zip(texts, cw.woe, pts)):
            self.rows.append(
                {
                    "party": self.party,
                    "column": column,
                    "bin": b,
                    "range": text,
                    "events": int(cw.events[b]) if cw.events.size else None,
                    "non_events": int(cw.nonevents[b]) if cw.nonevents.size else None,
                    "woe": float(w),
                    "coef": float(coef),
                    "points": float(p),
                }
            )

    def total(self, codes: dict[str, np.ndarray], groups: dict[str, np.ndarray]) -> np.ndarray:
        """Sum of this party's points per row from its columns' fine bin codes."""
        n = len(next(iter(codes.values()))) if codes else 0
        out = np.zeros(n)
        for col, pts in self._points.items():
            g = groups[col][codes[col]]
            out += np.where(g >= 0, pts[np.maximum(g, 0)], 0.0)
        return out


@dataclass
class Scorecard:
    """A trained federated scorecard, both parties' halves (tests and simulations hold both)."""

    scale: ScoreScale
    base_points: float
    bank_points: PointsTable
    centre_points: PointsTable
    bank: BinningBank
    centre: BinningCentre
    bank_coef: dict[str, float]
    centre_coef: dict[str, float]
    intercept: float

    def bank_total(self, X: np.ndarray) -> np.ndarray:
        """The bank's points per row of its own raw columns (in its original column order)."""
        codes = {c: self.bank.column_bins[c].codes(X[:, self.bank.names.index(c)]) for c in self.bank_coef}
        return self.bank_points.total(codes, {c: self.bank.own[c].group for c in self.bank_coef})

    def centre_total(self, X: np.ndarray) -> np.ndarray:
        codes = {c: self.centre.column_bins[c].codes(X[:, self.centre.names.index(c)]) for c in self.centre_coef}
        return self.centre_points.total(codes, {c: self.centre.woe[c].group for c in self.centre_coef})

    def score(self, Xb: np.ndarray, Xc: np.ndarray) -> np.ndarray:
        """Joint score: base + bank points + centre points (in one process: the reference path)."""
        return self.base_points + self.bank_total(Xb) + self.centre_total(Xc)


def train_scorecard(
    Xb: np.ndarray,
    bank_names: list[str],
    y: np.ndarray,
    Xc: np.ndarray,
    centre_names: list[str],
    *,
    binning: BinningConfig,
    lr: HeteroLRConfig,
    scale: ScoreScale,
    bank_categorical: dict[str, list[str]] | None = None,
    centre_categorical: dict[str, list[str]] | None = None,
) -> Scorecard:
    """Binning -> WOE -> two-party LR -> points, on aligned training rows."""
    bcat = bank_categorical or {}
    ccat = centre_categorical or {}
    bank = BinningBank("bank", "centre", Xb, bank_names, y, binning, categorical={k: len(v) for k, v in bcat.items()})
    centre = BinningCentre(
        "centre", "bank", Xc, centre_names, binning, categorical={k: len(v) for k, v in ccat.items()}
    )
    run_local({"bank": bank, "centre": centre})
    Wb, Wc = bank.transform_own(), centre.transform()
    blr = BankLR("bank", "centre", Wb, y, lr)
    clr = CentreLR("centre", "bank", Wc, lr)
    run_local({"bank": blr, "centre": clr})
    bm, cm = blr.model, clr.model
    bank_coef = dict(zip(bank.kept_own, bm["coef"]))
    centre_coef = dict(zip(centre.kept, cm["coef"]))
    bpts, cpts = PointsTable("bank"), PointsTable("credit_centre")
    for col, coef in bank_coef.items():
        cw = bank.own[col]
        bpts.add(col, describe_bins(bank.column_bins[col], cw, bcat.get(col)), cw, coef, scale)
    for col, coef in centre_coef.items():
        cw = centre.woe[col]
        cpts.add(col, describe_bins(centre.column_bins[col], cw, ccat.get(col)), cw, coef, scale)
    return Scorecard(
        scale=scale,
        base_points=scale.base_points(bm["intercept"]),
        bank_points=bpts,
        centre_points=cpts,
        bank=bank,
        centre=centre,
        bank_coef=bank_coef,
        centre_coef=centre_coef,
        intercept=float(bm["intercept"]),
    )
