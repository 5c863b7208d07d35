"""WOE/IV maths, bin merging and feature selection: plain numpy, used by both roles.

Conventions (those of ``optbinning`` and most scorecard texts): a bin's weight of evidence is
``WOE = ln(share of non-events in the bin / share of events in the bin)`` (higher = safer),
its IV contribution ``(share_nonevent - share_event) * WOE``, a column's IV their sum. A bin
with no events or no non-events gets 0.5 added to both counts for its WOE (it would be
infinite otherwise); merging avoids such bins among the value bins whenever it can.

Merging is deterministic, so two parties (or the federated and the centralised computation)
that start from the same fine counts get the same bins: value bins are merged until every
bin holds at least ``min_bin_share`` of the rows and has both events and non-events, then
(numeric columns) until event rates are monotonic when asked, then until at most ``max_bins``
remain. Categorical value bins are first ordered by event rate. The missing bin is never merged
with a value bin: "missing" is evidence of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from protocols.binning.fine import ColumnBins

MONOTONIC = ("auto", "ascending", "descending", "none")


@dataclass
class MergeSettings:
    """How fine bins become final bins (the bank's choice: it holds the labels)."""

    min_bin_share: float = 0.05
    max_bins: int = 8
    monotonic: str = "auto"  # for numeric columns; categorical bins are ordered by event rate

    def __post_init__(self) -> None:
        if not 0 <= self.min_bin_share < 0.5:
            raise ValueError(f"min_bin_share must be in [0, 0.5), got {self.min_bin_share}")
        if self.max_bins < 2:
            raise ValueError(f"max_bins must be at least 2, got {self.max_bins}")
        if self.monotonic not in MONOTONIC:
            raise ValueError(f"monotonic must be one of {MONOTONIC}, got {self.monotonic!r}")


@dataclass
class ColumnWoe:
    """One column's final bins: ``group[f]`` is the merged bin of fine bin ``f`` (-1: empty bin,
    WOE 0), ``woe``/``events``/``nonevents`` are per merged bin, ``iv`` the column's IV."""

    name: str
    kind: str
    group: np.ndarray
    woe: np.ndarray
    events: np.ndarray
    nonevents: np.ndarray
    iv: float
    fine_events: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fine_nonevents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def transform(self, codes: np.ndarray) -> np.ndarray:
        """WOE of every row from its fine bin code."""
        table = np.append(self.woe, 0.0)  # index -1 -> 0.0
        return table[self.group[np.asarray(codes, dtype=np.int64)]]


def woe_iv(events: np.ndarray, nonevents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin WOE and IV contribution (see the module docstring for pure bins)."""
    e = np.asarray(events, dtype=np.float64)
    ne = np.asarray(nonevents, dtype=np.float64)
    te, tn = e.sum(), ne.sum()
    if te <= 0 or tn <= 0:
        return np.zeros_like(e), np.zeros_like(e)
    pure = (e == 0) | (ne == 0)
    e_adj = np.where(pure, e + 0.5, e)
    ne_adj = np.where(pure, ne + 0.5, ne)
    pe, pn = e_adj / te, ne_adj / tn
    empty = (e + ne) == 0
    woe = np.where(empty, 0.0, np.log(np.where(empty, 1.0, pn) / np.where(empty, 1.0, pe)))
    iv = np.where(empty, 0.0, (pn - pe) * woe)
    return woe, iv


def _rate(e: float, ne: float) -> float:
    return e / (e + ne) if e + ne > 0 else 0.0


def _merge_value_bins(e: list[int], ne: list[int], total: int, st: MergeSettings, *, numeric: bool) -> list[list[int]]:
    """Groups of (ordered) value-bin positions; deterministic."""
    groups = [[i] for i in range(len(e)) if e[i] + ne[i] > 0]
    ge = [e[g[0]] for g in groups]
    gn = [ne[g[0]] for g in groups]

    def merge(i: int) -> None:  # merge group i with group i + 1
        groups[i] += groups.pop(i + 1)
        ge[i] += ge.pop(i + 1)
        gn[i] += gn.pop(i + 1)

    def neighbour(i: int) -> int:
        """Left index of the pair to merge for group i: the neighbour with the closer event rate."""
        if i == 0:
            return 0
        if i == len(groups) - 1:
            return i - 1
        r = _rate(ge[i], gn[i])
        dl = abs(r - _rate(ge[i - 1], gn[i - 1]))
        dr = abs(r - _rate(ge[i + 1], gn[i + 1]))
        return i - 1 if dl <= dr else i

    floor = st.min_bin_share * total
    while len(groups) > 1:
        bad = [i for i in range(len(groups)) if ge[i] + gn[i] < floor or ge[i] == 0 or gn[i] == 0]
        if not bad:
            break
        i = min(bad, key=lambda k: (ge[k] + gn[k], k))
        merge(neighbour(i))
    if numeric and st.monotonic != "none" and len(groups) > 2:
        direction = st.monotonic
        if direction == "auto":
            rates = np.array([_rate(a, b) for a, b in zip(ge, gn)])
            idx = np.arange(len(rates))
            direction = "ascending" if np.corrcoef(idx, rates)[0, 1] >= 0 else "descending"
        sign = 1 if direction == "ascending" else -1
        while len(groups) > 1:
            viol = [i for i in range(len(groups) - 1) if sign * (_rate(ge[i + 1], gn[i + 1]) - _rate(ge[i], gn[i])) < 0]
            if not viol:
                break
            merge(viol[0])
    while len(groups) > st.max_bins:
        diffs = [abs(_rate(ge[i + 1], gn[i + 1]) - _rate(ge[i], gn[i])) for i in range(len(groups) - 1)]
        merge(int(np.argmin(diffs)))
    return groups


def merge_column(
    name: str,
    kind: str,
    fine_events: np.ndarray,
    fine_counts: np.ndarray,
    settings: MergeSettings,
) -> ColumnWoe:
    """Final bins of one column from its fine-bin event and row counts (last fine bin = missing)."""
    fe = np.asarray(fine_events, dtype=np.int64)
    fc = np.asarray(fine_counts, dtype=np.int64)
    fn = fc - fe
    n_value = len(fc) - 1
    total = int(fc.sum())
    order = list(range(n_value))
    if kind != "numeric":  # categorical: value bins ordered by event rate (ties by index)
        order.sort(key=lambda i: (_rate(float(fe[i]), float(fn[i])), i))
    groups_pos = _merge_value_bins(
        [int(fe[i]) for i in order], [int(fn[i]) for i in order], total, settings, numeric=kind == "numeric"
    )
    group = np.full(len(fc), -1, dtype=np.int32)
    for g, members in enumerate(groups_pos):
        for pos in members:
            group[order[pos]] = g
    n_groups = len(groups_pos)
    if fc[-1] > 0:
        group[-1] = n_groups
        n_groups += 1
    ev = np.zeros(n_groups, dtype=np.int64)
    ne = np.zeros(n_groups, dtype=np.int64)
    used = group >= 0
    np.add.at(ev, group[used], fe[used])
    np.add.at(ne, group[used], fn[used])
    woe, iv = woe_iv(ev, ne)
    return ColumnWoe(name, kind, group, woe, ev, ne, float(iv.sum()), fine_events=fe, fine_nonevents=fn)


def woe_encode(
    columns: list[str],
    names: list[str],
    codes: np.ndarray,
    bins: list[ColumnBins],
    woe: dict[str, ColumnWoe],
    X: np.ndarray | None = None,
) -> np.ndarray:
    """WOE-encode ``columns`` of one party: its fine-bin ``codes`` of the binned rows, or, with
    ``X``, new rows binned by the same ``bins`` (both roles encode their own columns this way)."""
    out = np.empty(((codes if X is None else X).shape[0], len(columns)))
    for j, col in enumerate(columns):
        i = names.index(col)
        out[:, j] = woe[col].transform(codes[:, i] if X is None else bins[i].codes(X[:, i]))
    return out


def select_by_iv(ivs: dict[str, float], min_iv: float) -> list[str]:
    """Columns with IV at least ``min_iv``, highest IV first (ties by name)."""
    return [c for c, v in sorted(ivs.items(), key=lambda kv: (-kv[1], kv[0])) if v >= min_iv]


def drop_correlated(encoded: np.ndarray, ranked: list[str], max_corr: float) -> tuple[list[str], dict[str, str]]:
    """Walk ``ranked`` (best first) and keep a column unless its |Pearson r| with an already kept
    one exceeds ``max_corr``; returns (kept, {dropped: the kept column it duplicates}).

    ``encoded`` holds the WOE-encoded columns in ``ranked`` order (one party's own columns).
    """
    kept: list[int] = []
    dropped: dict[str, str] = {}
    if encoded.shape[1]:
        sd = encoded.std(axis=0)
        z = (encoded - encoded.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    for j, name in enumerate(ranked):
        hit = None
        for k in kept:
            r = float(np.mean(z[:, j] * z[:, k]))
            if abs(r) > max_corr:
                hit = ranked[k]
                break
        if hit is None:
            kept.append(j)
        else:
            dropped[name] = hit
    return [ranked[k] for k in kept], dropped
