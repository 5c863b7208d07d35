"""Population and characteristic stability (PSI / CSI) between a development and a recent sample.

Each party runs this locally on its own columns (CSI) and the bank on the joint score (PSI):
nothing crosses a boundary. Bins come from the development sample (the column's fine bins of
:mod:`protocols.binning.fine`: quantiles, one bin per categorical level, a missing bin), so a
shift into missing values or into a new level shows up. Thresholds: below 0.1 stable, 0.1-0.25
watch, above 0.25 shifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.binning.fine import fine_bin
from protocols.scorecard.points import population_stability, stability_verdict

WARN, ALERT = 0.1, 0.25


@dataclass
class Stability:
    """One column's (or the score's) stability."""

    column: str
    psi: float
    verdict: str
    bins: int
    dev_missing: float
    recent_missing: float

    def as_dict(self) -> dict:
        return {
            "column": self.column,
            "psi": round(self.psi, 6),
            "verdict": self.verdict,
            "bins": self.bins,
            "dev_missing_rate": round(self.dev_missing, 6),
            "recent_missing_rate": round(self.recent_missing, 6),
        }


def stability(
    dev: np.ndarray,
    recent: np.ndarray,
    names: list[str],
    *,
    categorical: dict[str, int] | None = None,
    n_bins: int = 10,
    warn: float = WARN,
    alert: float = ALERT,
) -> list[Stability]:
    """PSI of every column of ``recent`` against ``dev`` on bins fitted to ``dev``."""
    dev = np.asarray(dev, dtype=np.float64)
    recent = np.asarray(recent, dtype=np.float64)
    if dev.ndim != 2 or recent.ndim != 2 or dev.shape[1] != recent.shape[1] or dev.shape[1] != len(names):
        raise ValueError(f"dev {dev.shape} and recent {recent.shape} samples must hold the same {len(names)} columns")
    codes, bins = fine_bin(dev, names, categorical=categorical, n_bins=n_bins, min_rows=1)
    out = []
    for j, cb in enumerate(bins):
        e = np.bincount(codes[:, j], minlength=cb.n_bins)
        a = np.bincount(cb.codes(recent[:, j]), minlength=cb.n_bins)
        keep = (e + a) > 0
        psi = population_stability(e[keep], a[keep])
        out.append(
            Stability(
                names[j],
                psi,
                stability_verdict(psi, warn, alert),
                int(keep.sum()),
                float(np.isnan(dev[:, j]).mean()),
                float(np.isnan(recent[:, j]).mean()),
            )
        )
    return out
