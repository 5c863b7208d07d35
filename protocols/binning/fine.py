"""Local fine binning of one party's columns: quantile bins, categorical levels, a missing bin.

Both roles use it: the bank for its own columns, the centre for its columns before the
encrypted sums. What a fine binning releases is only bin *indices* and row counts; the edges
and level names stay with the column's owner (:class:`ColumnBins` is never sent).

Bin layout of a column with ``k`` value bins: ``0..k-1`` are the value bins (ordered for a
numeric column, one per level group for a categorical one) and bin ``k`` is the missing bin,
always present (possibly empty) so both parties agree on the layout without talking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass
class ColumnBins:
    """How one column was cut: kept by the column's owner only.

    ``edges`` are the interior cut points of a numeric column (bin ``j`` holds
    ``edges[j-1] <= x < edges[j]``); ``level_bin`` maps each categorical level code to its
    value bin (rare levels share the "other" bin); the last bin is the missing bin.
    """

    name: str
    kind: str
    edges: list[float] = field(default_factory=list)
    level_bin: list[int] = field(default_factory=list)
    missing_into: int = -1  # -1: missing values have their own bin; else the value bin they join (too few)

    @property
    def n_value_bins(self) -> int:
        if self.kind == NUMERIC:
            return len(self.edges) + 1
        return (max(self.level_bin) + 1) if self.level_bin else 1

    @property
    def n_bins(self) -> int:
        """Value bins plus the missing bin."""
        return self.n_value_bins + 1

    @property
    def missing_bin(self) -> int:
        return self.n_value_bins

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Fine bin index of every value (NaN -> the missing bin; an unseen level -> missing)."""
        x = np.asarray(x, dtype=np.float64)
        miss = np.isnan(x)
        out = np.full(x.shape, self.missing_bin if self.missing_into < 0 else self.missing_into, dtype=np.int32)
        if self.kind == NUMERIC:
            out[~miss] = np.searchsorted(np.asarray(self.edges, dtype=np.float64), x[~miss], side="right")
        else:
            lb = np.asarray(self.level_bin, dtype=np.int32)
            lv = x[~miss].astype(np.int64)
            known = (lv >= 0) & (lv < len(lb))
            vals = np.full(lv.shape, self.missing_bin, dtype=np.int32)
            vals[known] = lb[lv[known]]
            out[~miss] = vals
        return out


def _numeric_edges(x: np.ndarray, n_bins: int, min_rows: int) -> list[float]:
    """Quantile cut points of the non-missing values, then cuts dropped until every bin has ``min_rows``."""
    v = np.sort(x[~np.isnan(x)])
    if v.size == 0:
        return []
    qs = np.quantile(v, np.linspace(0, 1, n_bins + 1)[1:-1], method="lower")
    edges = [float(e) for e in np.unique(qs) if e > v[0]]
    while edges:
        counts = np.diff(np.searchsorted(v, [-np.inf, *edges, np.inf], side="left"))
        small = np.flatnonzero(counts < min_rows)
        if small.size == 0:
            break
        j = int(small[0])
        # drop the cut on the side of the smaller neighbour (or the only one)
        if j == 0:
            edges.pop(0)
        elif j == len(edges):
            edges.pop()
        else:
            edges.pop(j - 1 if counts[j - 1] <= counts[j + 1] else j)
    return edges


def _level_bins(codes: np.ndarray, n_levels: int, min_rows: int) -> list[int]:
    """One bin per level with at least ``min_rows`` rows; rarer levels share one "other" bin."""
    c = codes[~np.isnan(codes)].astype(np.int64)
    counts = np.bincount(c, minlength=n_levels)[:n_levels]
    frequent = np.flatnonzero(counts >= min_rows)
    level_bin = np.full(n_levels, len(frequent), dtype=np.int64)  # "other"
    level_bin[frequent] = np.arange(len(frequent))
    other = counts[level_bin == len(frequent)].sum()
    if 0 < other < min_rows and len(frequent):
        # a tiny "other" bin would be released below the floor: fold it into the smallest level bin
        level_bin[level_bin == len(frequent)] = int(np.argmin(counts[frequent]))
    elif other == 0:
        level_bin[level_bin == len(frequent)] = max(len(frequent) - 1, 0)
    return level_bin.tolist()


def fine_bin(
    X: np.ndarray,
    names: list[str],
    *,
    categorical: dict[str, int] | None = None,
    n_bins: int = 20,
    min_rows: int = 1,
) -> tuple[np.ndarray, list[ColumnBins]]:
    """Fine bins of every column: ``(codes (n, k) int32, per-column ColumnBins)``.

    ``categorical`` maps a categorical column's name to its number of levels (the column holds
    level codes, NaN for missing). ``min_rows`` is the smallest value bin released: quantile cuts
    are dropped and rare levels pooled until each value bin has at least that many rows.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"X of shape {X.shape} does not match {len(names)} column names")
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    categorical = categorical or {}
    bins: list[ColumnBins] = []
    codes = np.empty(X.shape, dtype=np.int32)
    for j, name in enumerate(names):
        if name in categorical:
            cb = ColumnBins(name, CATEGORICAL, level_bin=_level_bins(X[:, j], int(categorical[name]), min_rows))
        else:
            cb = ColumnBins(name, NUMERIC, edges=_numeric_edges(X[:, j], n_bins, min_rows))
        n_miss = int(np.isnan(X[:, j]).sum())
        if 0 < n_miss < min_rows:
            cb.missing_into = 0  # too few to release on their own: they join the first value bin
        codes[:, j] = cb.codes(X[:, j])
        bins.append(cb)
    return codes, bins
