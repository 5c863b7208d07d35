"""Centralised gradient-boosted trees: the plaintext reference SecureBoost must reproduce.

Why a reference of our own (not XGBoost/LightGBM): "lossless" means the federated protocol
grows *the same trees* as one party holding all columns would. That is only testable if the
reference uses exactly the federated model's binning (:mod:`protocols.gbdt.binning`), gradient
quantisation, gain formula, candidate rules, tie-breaking and level-wise growth. The pieces
here are therefore shared: :mod:`protocols.secureboost`'s guest calls the same functions on its
own columns and on the host's decrypted histogram sums, so equal integers give equal floats
and equal splits.

Model: binary logistic loss; per tree, ``g = sigmoid(raw) - y`` and ``h = p (1 - p)`` are
quantised to integers ``round(g * 2^P)``, ``round(h * 2^P)`` (``P = precision_bits``) because
that is what the guest encrypts; histogram sums are then exact integers on both sides.
Split gain (XGBoost paper form)::

    gain = 1/2 [GL^2/(HL+lambda) + GR^2/(HR+lambda) - G^2/(H+lambda)] - gamma

a candidate needs ``HL, HR >= min_child_weight`` and ``nL, nR >= min_samples_leaf``; a node
splits only when its best gain is > 0. Ties: the first candidate wins in column order
(guest columns before host columns), then direction of missing values (right before left),
then bin order. Missing values get a learned direction per split (section "missing values"
below). Leaf value ``-lr * G/(H+lambda)``.
Trees grow level by level to ``max_depth``; a node is expanded only if it could still be
split (``n >= max(2, 2 min_samples_leaf)`` and ``H >= 2 min_child_weight``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.gbdt.binning import MISSING_THRESHOLD, BinEdges, fit_bins
from protocols.gbdt.params import GBDTParams

OWNER_LEAF, OWNER_GUEST, OWNER_HOST = 0, 1, 2
_LO_BITS = 26  # exact int64 bincount: split values into 26-bit halves summed in float64
MAX_ROWS = 1 << 26


# -- loss and quantisation ------------------------------------------------------------------


def sigmoid(raw: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(raw, dtype=np.float64)))


def base_score(y: np.ndarray) -> float:
    """Initial raw score: the log-odds of the training default rate."""
    p = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
    return math.log(p / (1.0 - p))


def quantized_grad_hess(y: np.ndarray, raw: np.ndarray, precision_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Logistic-loss gradient and hessian as int64 fixed-point with ``precision_bits`` fraction bits."""
    p = sigmoid(raw)
    scale = float(2**precision_bits)
    g = np.rint((p - y) * scale).astype(np.int64)
    h = np.rint(p * (1.0 - p) * scale).astype(np.int64)
    return g, h


def logloss(y: np.ndarray, raw: np.ndarray) -> float:
    # log(1 + e^raw) - y raw, computed stably
    raw = np.asarray(raw, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, raw) - y * raw))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Rank-based AUC with ties averaged (kept here so protocols need no metrics package)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(s.size, dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    for a, b in zip(starts, ends):
        ranks[a:b] = (a + b + 1) / 2.0
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# -- exact histograms -----------------------------------------------------------------------


def exact_bincount(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``sum(values[keys == k])`` for every ``k < size`` as exact int64 (values int64)."""
    if keys.size >= MAX_ROWS:
        raise ValueError(f"too many rows for exact histograms ({keys.size} >= {MAX_ROWS})")
    values = np.asarray(values, dtype=np.int64)
    lo = (values & ((1 << _LO_BITS) - 1)).astype(np.float64)
    hi = (values >> _LO_BITS).astype(np.float64)
    s_lo = np.bincount(keys, weights=lo, minlength=size)
    s_hi = np.bincount(keys, weights=hi, minlength=size)
    return (s_hi.astype(np.int64) << _LO_BITS) + s_lo.astype(np.int64)


def node_histograms(
    bins: np.ndarray,
    rows: np.ndarray,
    local_node: np.ndarray,
    n_nodes: int,
    n_bins_max: int,
    g: np.ndarray,
    h: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (node, feature, bin) sums of g, h and counts, shape ``(n_nodes, F, B)`` each.

    ``rows`` are the training rows involved, ``local_node[i]`` the index (< n_nodes) of the
    node holding ``rows[i]``.
    """
    F = bins.shape[1]
    B = n_bins_max
    size = n_nodes * F * B
    keys = (
        (local_node.astype(np.int64)[:, None] * F + np.arange(F)[None, :]) * B + bins[rows].astype(np.int64)
    ).ravel()
    hg = exact_bincount(keys, np.repeat(g[rows], F), size).reshape(n_nodes, F, B)
    hh = exact_bincount(keys, np.repeat(h[rows], F), size).reshape(n_nodes, F, B)
    cnt = np.bincount(keys, minlength=size).astype(np.int64).reshape(n_nodes, F, B)
    return hg, hh, cnt


def candidate_mask(cnt: np.ndarray, n_bins: np.ndarray, min_samples_leaf: int) -> np.ndarray:
    """Valid thresholds "bin <= b" of one node, from per-(feature, bin) counts ``(F, B)``.

    A threshold is a candidate iff it is not the last bin, its own bin is non-empty (so no two
    candidates of one feature give the same partition) and both sides keep
    ``min_samples_leaf`` rows. The host applies this rule to its own features (it knows the
    counts) so the guest never needs the host's counts.
    """
    cum = np.cumsum(cnt, axis=-1)
    total = cum[..., -1:]
    b = np.arange(cnt.shape[-1])
    return (
        (b[None, :] < (np.asarray(n_bins)[:, None] - 1))
        & (cnt > 0)
        & (cum >= min_samples_leaf)
        & (total - cum >= min_samples_leaf)
    )


def split_gains(GL: np.ndarray, HL: np.ndarray, G: int, H: int, params: GBDTParams) -> np.ndarray:
    """Gains of candidate left sums ``(GL, HL)`` (fixed-point ints) in a node with sums ``(G, H)``.

    Invalid candidates (a child below ``min_child_weight``) get ``-inf``. Used verbatim by the
    reference and the federated guest so equal integers give bit-identical gains.
    """
    s = 2.0**-params.precision_bits
    GL = np.asarray(GL, dtype=np.int64)
    HL = np.asarray(HL, dtype=np.int64)
    gl, hl = GL * s, HL * s
    gr, hr = (G - GL) * s, (H - HL) * s
    g, h = G * s, H * s
    lam = params.reg_lambda
    gain = 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - g * g / (h + lam)) - params.gamma
    ok = (hl >= params.min_child_weight) & (hr >= params.min_child_weight)
    return np.where(ok, gain, -np.inf)


def first_max(gains: np.ndarray) -> tuple[int, float]:
    """(index, gain) of the first maximum, or (-1, -inf) when there is no finite gain."""
    if gains.size == 0:
        return -1, -np.inf
    i = int(np.argmax(gains))
    g = float(gains.flat[i])
    return (i, g) if np.isfinite(g) else (-1, -np.inf)


def can_split(n: int, H: int, params: GBDTParams) -> bool:
    """Whether a node could still be split (so it is worth building its histograms)."""
    return n >= max(2, 2 * params.min_samples_leaf) and H * 2.0**-params.precision_bits >= 2 * params.min_child_weight


def leaf_values(G: np.ndarray, H: np.ndarray, params: GBDTParams) -> np.ndarray:
    s = 2.0**-params.precision_bits
    return -params.learning_rate * (np.asarray(G) * s) / (np.asarray(H) * s + params.reg_lambda)


# -- missing values: a learned direction per split (issue 17) --------------------------------
#
# Why: public credit data is mostly sparse (no provident-fund account, no court record, no tax
# filing this year) and "missing" carries signal. Giving NaN its own bin (:mod:`protocols.gbdt.binning`)
# lets a split isolate the missing rows, but a threshold split "x <= t" would always send them
# right. As XGBoost's *default direction* and FATE's ``use_missing`` do, every threshold of a
# feature that had missing training values is also tried with the missing rows sent **left**, and
# the better of the two is kept; the split records the direction (``missing_left``), so routing at
# training, validation and prediction sends a NaN the learned way.
#
# Candidate grid of one node, shape ``(F, 2, B)`` (feature, direction, bin), flattened in that
# order for the first-maximum tie-break (so the reference and the guest break ties alike):
#
# * ``[f, 0, b]``: "bin <= b" goes left, missing right -- the classic candidates
#   (:func:`candidate_mask`); for a feature with a missing bin ``m`` the
#   last one, ``b = m - 1``, is "all values left, missing right", the split that isolates them;
# * ``[f, 1, b]``: "bin <= b **or missing**" goes left, for value bins ``b < m - 1`` only (at
#   ``b = m - 1`` every row would go left). It exists only when the node has missing rows on
#   ``f`` (otherwise it is the same partition as ``[f, 0, b]``) and its own bin is non-empty, and
#   both sides keep ``min_samples_leaf`` rows.
#
# Left sums of ``[f, 1, b]`` are those of ``[f, 0, b]`` plus the missing bin's. The same
# functions serve the plaintext reference (:class:`PlainGBDT`), the guest
# on its own columns, and -- on ciphertexts -- the host (``protocols.secureboost.kernels``), which
# applies :func:`candidate_grid` to its own counts.

RIGHT, LEFT = 0, 1  # the direction axis of the candidate grid: where missing rows go


def missing_bins(bins: BinEdges) -> np.ndarray:
    """Per feature, the index of its missing bin, or -1 when it had no missing training value."""
    return np.array([t.size if t.size and t[-1] == MISSING_THRESHOLD else -1 for t in bins.thresholds], dtype=np.int64)


def missing_sums(hist: np.ndarray, miss_bin: np.ndarray) -> np.ndarray:
    """Per feature, the entry of ``hist`` (``(F, B)``) at its missing bin (0 without one)."""
    F = hist.shape[0]
    at = np.maximum(miss_bin, 0)
    return np.where(miss_bin >= 0, hist[np.arange(F), at], 0)


def candidate_grid(cnt: np.ndarray, n_bins: np.ndarray, miss_bin: np.ndarray, min_samples_leaf: int) -> np.ndarray:
    """Valid candidates ``(F, 2, B)`` of one node from its per-(feature, bin) counts ``(F, B)``."""
    right = candidate_mask(cnt, n_bins, min_samples_leaf)
    cum = np.cumsum(cnt, axis=-1)
    total = cum[..., -1:]
    m = missing_sums(cnt, miss_bin)[:, None]  # missing rows of this node, per feature
    n_left = cum + m
    b = np.arange(cnt.shape[-1])
    left = (
        (miss_bin[:, None] >= 0)
        & (b[None, :] < miss_bin[:, None] - 1)
        & (m > 0)
        & (cnt > 0)
        & (n_left >= min_samples_leaf)
        & (total - n_left >= min_samples_leaf)
    )
    return np.stack([right, left], axis=1)


def grid_left_sums(hist: np.ndarray, miss_bin: np.ndarray) -> np.ndarray:
    """Left sums ``(F, 2, B)`` of every candidate from one node's per-bin sums ``(F, B)``."""
    cum = np.cumsum(hist, axis=-1)
    return np.stack([cum, cum + missing_sums(hist, miss_bin)[:, None]], axis=1)


@dataclass(frozen=True)
class BestSplit:
    """The first best candidate of a node: where it is, its gain and its left sums (fixed point)."""

    feature: int
    bin: int
    missing_left: bool
    gain: float
    GL: int
    HL: int
    NL: int
    left_bins: tuple[int, ...] | None = None  # a categorical split: the bins (levels) that go left


def best_split(
    hg: np.ndarray,
    hh: np.ndarray,
    cnt: np.ndarray,
    n_bins: np.ndarray,
    miss_bin: np.ndarray,
    G: int,
    H: int,
    params: GBDTParams,
    categorical: frozenset[int] = frozenset(),
) -> BestSplit | None:
    """The first maximum-gain candidate of one node (``(F, B)`` histograms), or None if none is valid.

    Columns in ``categorical`` are scanned as level sets (:func:`categorical_order`) in the
    ``[f, RIGHT, j]`` slots (prefix of ``j + 1`` levels). The caller decides whether the gain is
    worth a split (``> 0``, or better than the host's).
    """
    mask = candidate_grid(cnt, n_bins, miss_bin, params.min_samples_leaf)
    GL, HL, NL = grid_left_sums(hg, miss_bin), grid_left_sums(hh, miss_bin), grid_left_sums(cnt, miss_bin)
    orders: dict[int, np.ndarray] = {}
    for f in sorted(categorical):
        order = orders[f] = categorical_order(hg[f], hh[f], cnt[f], params)
        mask[f] = False
        GL[f], HL[f], NL[f] = 0, 0, 0
        j = order.size - 1  # prefixes of 1 .. L-1 levels
        if j < 1:
            continue
        GL[f, RIGHT, :j] = np.cumsum(hg[f, order])[:j]
        HL[f, RIGHT, :j] = np.cumsum(hh[f, order])[:j]
        NL[f, RIGHT, :j] = nl = np.cumsum(cnt[f, order])[:j]
        n = int(cnt[f].sum())
        mask[f, RIGHT, :j] = (nl >= params.min_samples_leaf) & (n - nl >= params.min_samples_leaf)
    i, gain = first_max(np.where(mask, split_gains(GL, HL, G, H, params), -np.inf).ravel())
    if i < 0:
        return None
    f, d, b = (int(v) for v in np.unravel_index(i, mask.shape))
    sums = (int(GL[f, d, b]), int(HL[f, d, b]), int(NL[f, d, b]))
    if f in orders:
        left = tuple(sorted(int(v) for v in orders[f][: b + 1]))
        return BestSplit(f, -1, int(miss_bin[f]) in left, gain, *sums, left_bins=left)
    return BestSplit(f, b, d == LEFT, gain, *sums)


def binned_go_left(
    col_bins: np.ndarray, b: int, missing_left: bool, miss_bin: int, left_bins: Sequence[int] | None = None
) -> np.ndarray:
    """Rows of one binned column that go left at "bin <= b" (plus the missing bin if ``missing_left``).

    With ``left_bins`` (a categorical split) exactly the rows whose bin is in that set go left.
    """
    col = np.asarray(col_bins).astype(np.int64)
    if left_bins is not None:
        return np.isin(col, np.asarray(left_bins, dtype=np.int64))
    go = col <= b
    if missing_left and miss_bin >= 0:
        go |= col == miss_bin
    return go


def raw_go_left(x: np.ndarray, threshold: float, missing_left: bool, levels: np.ndarray | None = None) -> np.ndarray:
    """Raw values that go left at "x <= threshold"; NaN goes left only if ``missing_left``.

    With ``levels`` (a categorical split) a value goes left iff it is one of them; a level never
    seen in training goes right.
    """
    x = np.asarray(x, dtype=np.float64)
    go = np.isin(x, levels) if levels is not None else x <= threshold
    if missing_left:
        go |= np.isnan(x)
    return go


# -- categorical columns: levels ordered by gradient statistics (issue 17) ---------------------
#
# Industry section, district code, enterprise type and tax-credit grade are categories: their
# codes have no order, so "x <= t" splits are arbitrary. As LightGBM and XGBoost do (Fisher 1958:
# for a convex loss the best binary partition of levels is a prefix of the levels sorted by
# G/H), each node sorts the column's non-empty levels -- the missing bin counting as one more
# level -- by ``G / (H + lambda)`` (ties: level order) and scans the ``L - 1`` prefixes. The split
# records its left set of levels; a level unseen in training goes right.


def categorical_order(hg_f: np.ndarray, hh_f: np.ndarray, cnt_f: np.ndarray, params: GBDTParams) -> np.ndarray:
    """Non-empty bins of one categorical column in one node, ordered by ``G / (H + lambda)`` (stable)."""
    levels = np.flatnonzero(np.asarray(cnt_f) > 0)
    g = np.asarray(hg_f, dtype=np.int64)[levels].astype(np.float64)
    h = np.asarray(hh_f, dtype=np.int64)[levels].astype(np.float64) + params.reg_lambda * 2.0**params.precision_bits
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h > 0, g / np.where(h > 0, h, 1.0), 0.0)
    return levels[np.argsort(ratio, kind="stable")]


# -- trees ----------------------------------------------------------------------------------


@dataclass
class Tree:
    """One tree as parallel arrays over nodes in breadth-first order (parents before children).

    ``owner`` is 0 for leaves, 1 for guest splits, 2 for host splits. For guest splits
    ``feature``/``threshold`` are the guest's column and raw threshold ("x <= t goes left");
    for host splits the guest's copy holds only ``split_id`` (opaque), ``feature = -1`` and
    ``threshold = nan``: the host resolves the id locally. ``value`` is the (learning-rate
    scaled) leaf value of every node. ``missing_left`` is the learned direction of a missing
    value at a guest split (see "missing values" below; at host splits only the host knows it).
    A categorical guest split has ``cat_start[k] >= 0``: its left level codes are
    ``cat_levels[cat_start[k] : cat_start[k] + cat_count[k]]`` (``threshold`` is NaN); a NaN goes
    left iff ``missing_left``.
    """

    left: np.ndarray
    right: np.ndarray
    owner: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    split_id: np.ndarray
    value: np.ndarray
    gain: np.ndarray
    n_samples: np.ndarray
    missing_left: np.ndarray
    cat_start: np.ndarray
    cat_count: np.ndarray
    cat_levels: np.ndarray  # flat: the left level codes of every categorical split

    @property
    def n_nodes(self) -> int:
        return int(self.left.size)

    def levels(self, node: int) -> np.ndarray | None:
        """The left level codes of a categorical split, None for a threshold split or a leaf."""
        a = int(self.cat_start[node])
        return None if a < 0 else self.cat_levels[a : a + int(self.cat_count[node])]

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _TREE_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, np.ndarray]) -> Tree:
        d = dict(d)
        n = len(d["left"])  # trees saved before issue 17 have no direction and no categorical split
        d.setdefault("missing_left", np.zeros(n, dtype=bool))
        d.setdefault("cat_start", np.full(n, -1))
        d.setdefault("cat_count", np.zeros(n))
        d.setdefault("cat_levels", np.zeros(0))
        return cls(**{k: np.asarray(d[k], dtype=_TREE_FIELDS[k]) for k in _TREE_FIELDS})

    def leaves(self, go_left: Callable[[int, np.ndarray], np.ndarray], n_rows: int) -> np.ndarray:
        """Leaf node of every row; ``go_left(node, rows) -> bool array`` decides each split."""
        if self.n_nodes == 0:
            raise ValueError("empty tree")
        n = n_rows
        node = np.zeros(n, dtype=np.int64)
        for k in range(self.n_nodes):
            if self.left[k] < 0:
                continue
            idx = np.flatnonzero(node == k)
            if idx.size == 0:
                continue
            go = np.asarray(go_left(k, idx), dtype=bool)
            node[idx[go]] = self.left[k]
            node[idx[~go]] = self.right[k]
        return node


_TREE_FIELDS = {
    "left": np.int32,
    "right": np.int32,
    "owner": np.int8,
    "feature": np.int32,
    "threshold": np.float64,
    "split_id": np.uint64,
    "value": np.float64,
    "gain": np.float64,
    "n_samples": np.int64,
    "missing_left": np.bool_,
    "cat_start": np.int64,
    "cat_count": np.int32,
    "cat_levels": np.float64,
}


@dataclass
class TreeBuilder:
    """A tree under construction; plain lists so a party can persist it between steps."""

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    split_id: list[int] = field(default_factory=list)
    G: list[int] = field(default_factory=list)
    H: list[int] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    gain: list[float] = field(default_factory=list)
    missing_left: list[bool] = field(default_factory=list)
    is_cat: list[bool] = field(default_factory=list)
    cat: list[list[float]] = field(default_factory=list)  # left level codes of categorical splits

    def add_node(self, G: int, H: int, n: int) -> int:
        self.left.append(-1)
        self.right.append(-1)
        self.owner.append(OWNER_LEAF)
        self.feature.append(-1)
        self.threshold.append(float("nan"))
        self.split_id.append(0)
        self.G.append(int(G))
        self.H.append(int(H))
        self.n.append(int(n))
        self.gain.append(0.0)
        self.missing_left.append(False)
        self.is_cat.append(False)
        self.cat.append([])
        return len(self.left) - 1

    def split(
        self,
        node: int,
        owner: int,
        feature: int,
        threshold: float,
        split_id: int,
        gain: float,
        left_sums: tuple[int, int, int],
        right_sums: tuple[int, int, int],
        missing_left: bool = False,
        levels: Sequence[float] | None = None,
    ) -> tuple[int, int]:
        lid = self.add_node(*left_sums)
        rid = self.add_node(*right_sums)
        self.left[node], self.right[node] = lid, rid
        self.owner[node] = owner
        self.feature[node] = int(feature)
        self.threshold[node] = float(threshold)
        self.split_id[node] = int(split_id)
        self.gain[node] = float(gain)
        self.missing_left[node] = bool(missing_left)
        if levels is not None:
            self.is_cat[node], self.cat[node] = True, [float(v) for v in levels]
        return lid, rid

    def finish(self, params: GBDTParams) -> Tree:
        return Tree(
            left=np.array(self.left, dtype=np.int32),
            right=np.array(self.right, dtype=np.int32),
            owner=np.array(self.owner, dtype=np.int8),
            feature=np.array(self.feature, dtype=np.int32),
            threshold=np.array(self.threshold, dtype=np.float64),
            split_id=np.array(self.split_id, dtype=np.uint64),
            value=leaf_values(np.array(self.G, dtype=np.float64), np.array(self.H, dtype=np.float64), params),
            gain=np.array(self.gain, dtype=np.float64),
            n_samples=np.array(self.n, dtype=np.int64),
            missing_left=np.array(self.missing_left, dtype=bool),
            cat_start=np.array(
                [sum(len(c) for c in self.cat[:k]) if self.is_cat[k] else -1 for k in range(len(self.cat))],
                dtype=np.int64,
            ),
            cat_count=np.array([len(c) for c in self.cat], dtype=np.int32),
            cat_levels=np.array([v for c in self.cat for v in c], dtype=np.float64),
        )

    def to_dict(self) -> dict[str, list]:
        return {
            k: list(getattr(self, k))
            for k in (
                "left",
                "right",
                "owner",
                "feature",
                "threshold",
                "split_id",
                "G",
                "H",
                "n",
                "gain",
                "missing_left",
                "is_cat",
            )
        } | {"cat": [list(c) for c in self.cat]}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> TreeBuilder:
        lists: dict[str, Any] = {
            k: [float(v) for v in d[k]]
            if k in ("threshold", "gain")
            else [bool(v) for v in d[k]]
            if k in ("missing_left", "is_cat")
            else [[float(v) for v in c] for c in d[k]]
            if k == "cat"
            else [int(v) for v in d[k]]
            for k in d
        }
        n = len(lists.get("left", []))  # saved before issue 17
        lists.setdefault("missing_left", [False] * n)
        lists.setdefault("is_cat", [False] * n)
        lists.setdefault("cat", [[] for _ in range(n)])
        return cls(**lists)


@dataclass
class EarlyStopper:
    """Stop when validation loss has not improved for ``rounds`` trees; remember the best count."""

    rounds: int
    best_loss: float = float("inf")
    best_n_trees: int = 0
    since_best: int = 0

    def update(self, n_trees: int, loss: float) -> bool:
        """Record the loss after ``n_trees`` trees; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_n_trees, self.since_best = loss, n_trees, 0
        else:
            self.since_best += 1
        return self.rounds > 0 and self.since_best >= self.rounds


class _BinnedSplitter:
    """``go_left`` for a binned matrix: node -> (column, bin, missing direction) from the tree's arrays."""

    def __init__(
        self,
        tree: Tree,
        bins: np.ndarray,
        column_of: Callable[[int], int],
        bin_of: Callable[[int], int],
        miss_bin: np.ndarray,
        level_codes: list[np.ndarray],
    ) -> None:
        self.tree, self.bins, self.column_of, self.bin_of, self.miss_bin = tree, bins, column_of, bin_of, miss_bin
        self.level_codes = level_codes  # per column: the level code of each bin (categorical columns)

    def __call__(self, node: int, rows: np.ndarray) -> np.ndarray:
        col = self.column_of(node)
        ml, mb = bool(self.tree.missing_left[node]), int(self.miss_bin[col])
        return binned_go_left(self.bins[rows, col], self.bin_of(node), ml, mb, self.left_bins_of(node, col))

    def left_bins_of(self, node: int, col: int) -> list[int] | None:
        levels = self.tree.levels(node)
        if levels is None:
            return None
        left = [int(b) for b in np.flatnonzero(np.isin(self.level_codes[col], levels))]
        return left + [int(self.miss_bin[col])] if self.tree.missing_left[node] else left


class PlainGBDT:
    """The centralised reference: all columns in one place, guest columns first.

    ``fit(X, y, n_guest_features=k)`` treats columns ``[0, k)`` as the guest's and the rest as
    the host's (that only matters for ``complete_secure``, the tie-break order and the
    ``owner`` recorded in the trees).
    """

    def __init__(self, params: GBDTParams, *, max_bins: int = 32) -> None:
        self.params = params
        self.max_bins = max_bins
        self.trees: list[Tree] = []
        self.history: list[dict] = []
        self.base: float = 0.0
        self.bins: BinEdges | None = None
        self.n_guest_features = 0
        self.tree_seconds: list[float] = []
        self._split_bins: list[np.ndarray] = []  # per tree: bin index of each split node
        self._level_codes: list[np.ndarray] = []  # per column: the level code of each bin

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        n_guest_features: int | None = None,
        categorical: Sequence[int] = (),
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> PlainGBDT:
        p = self.params
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.n_guest_features = X.shape[1] if n_guest_features is None else int(n_guest_features)
        self.bins = fit_bins(X, self.max_bins, categorical=categorical)
        self._level_codes = [self.bins.levels(j, np.arange(256)) for j in range(X.shape[1])]
        Xb = self.bins.transform(X)
        n_bins = self.bins.n_bins
        self.base = base_score(y)
        raw = np.full(X.shape[0], self.base)
        val_raw: np.ndarray | None = None
        Xb_val, yv = np.zeros((0, X.shape[1]), dtype=np.uint8), np.zeros(0)
        if X_val is not None and y_val is not None:
            Xb_val = self.bins.transform(X_val, what="validation features")
            yv = np.asarray(y_val, dtype=np.float64)
            val_raw = np.full(Xb_val.shape[0], self.base)
        stopper = EarlyStopper(p.early_stopping_rounds)
        for t in range(p.n_trees):
            t0 = time.perf_counter()
            g, h = quantized_grad_hess(y, raw, p.precision_bits)
            n_cols = self.n_guest_features if (p.complete_secure and t == 0) else X.shape[1]
            tree, split_bins, leaf_of_row = self._grow(Xb, n_bins, g, h, n_cols)
            raw = raw + tree.value[leaf_of_row]
            self.trees.append(tree)
            self._split_bins.append(split_bins)
            self.tree_seconds.append(time.perf_counter() - t0)
            rec = {"tree": t, "train_loss": logloss(y, raw), "n_nodes": tree.n_nodes}
            if val_raw is not None:
                val_raw = val_raw + tree.value[tree.leaves(self._splitter(t, Xb_val), Xb_val.shape[0])]
                rec["val_loss"] = logloss(yv, val_raw)
                rec["val_auc"] = roc_auc(yv, val_raw)
                if stopper.update(t + 1, rec["val_loss"]):
                    self.history.append(rec)
                    break
            self.history.append(rec)
        if val_raw is not None and p.early_stopping_rounds > 0:
            self.trees = self.trees[: stopper.best_n_trees]
            self._split_bins = self._split_bins[: stopper.best_n_trees]
        return self

    def _splitter(self, t: int, Xb: np.ndarray) -> _BinnedSplitter:
        tree, sb = self.trees[t], self._split_bins[t]
        ng = self.n_guest_features
        assert self.bins is not None
        return _BinnedSplitter(
            tree,
            Xb,
            lambda k: tree.feature[k] + (ng if tree.owner[k] == OWNER_HOST else 0),
            lambda k: sb[k],
            missing_bins(self.bins),
            self._level_codes,
        )

    def _grow(
        self, Xb: np.ndarray, n_bins: np.ndarray, g: np.ndarray, h: np.ndarray, n_cols: int
    ) -> tuple[Tree, np.ndarray, np.ndarray]:
        p = self.params
        n = Xb.shape[0]
        B = int(n_bins.max())
        ng = self.n_guest_features
        assert self.bins is not None
        miss_bin = missing_bins(self.bins)
        cats = frozenset(j for j in self.bins.categorical if j < n_cols)
        tb = TreeBuilder()
        split_bin: dict[int, int] = {}
        root = tb.add_node(int(g.sum()), int(h.sum()), n)
        node_of_row = np.zeros(n, dtype=np.int64)
        frontier = [root] if can_split(n, tb.H[root], p) else []
        for depth in range(p.max_depth):
            if not frontier:
                break
            pos = np.full(len(tb.left), -1, dtype=np.int64)
            pos[frontier] = np.arange(len(frontier))
            rows = np.flatnonzero(pos[node_of_row] >= 0)
            local = pos[node_of_row[rows]]
            hg, hh, cnt = node_histograms(Xb[:, :n_cols], rows, local, len(frontier), B, g, h)
            new_frontier = []
            for k, node in enumerate(frontier):
                best = best_split(
                    hg[k], hh[k], cnt[k], n_bins[:n_cols], miss_bin[:n_cols], tb.G[node], tb.H[node], p, cats
                )
                if best is None or not best.gain > 0:
                    continue
                col, b = best.feature, best.bin
                owner = OWNER_GUEST if col < ng else OWNER_HOST
                feat = col if owner == OWNER_GUEST else col - ng
                cat = best.left_bins is not None
                lid, rid = tb.split(
                    node,
                    owner,
                    feat,
                    float("nan") if cat else self.bins.threshold(col, b),
                    0,
                    best.gain,
                    (best.GL, best.HL, best.NL),
                    (tb.G[node] - best.GL, tb.H[node] - best.HL, tb.n[node] - best.NL),
                    best.missing_left,
                    self.bins.levels(col, np.array(best.left_bins)).tolist() if cat else None,
                )
                split_bin[node] = b
                at = rows[local == k]
                go = binned_go_left(Xb[at, col], b, best.missing_left, int(miss_bin[col]), best.left_bins)
                node_of_row[at[go]] = lid
                node_of_row[at[~go]] = rid
                if depth + 1 < p.max_depth:
                    new_frontier += [c for c in (lid, rid) if can_split(tb.n[c], tb.H[c], p)]
            frontier = new_frontier
        tree = tb.finish(p)
        sb = np.full(tree.n_nodes, -1, dtype=np.int64)
        for k, b in split_bin.items():
            sb[k] = b
        return tree, sb, node_of_row

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        if self.bins is None:
            raise RuntimeError("fit first")
        Xb = self.bins.transform(X)
        raw = np.full(Xb.shape[0], self.base)
        for t, tree in enumerate(self.trees):
            raw = raw + tree.value[tree.leaves(self._splitter(t, Xb), Xb.shape[0])]
        return raw

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return sigmoid(self.decision_function(X))
