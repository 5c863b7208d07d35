"""The two halves of a trained SecureBoost model and how they predict together.

Each party keeps only its own splits: the guest (bank) holds every tree's structure, leaf
values and its own (feature, threshold) splits, and for the host's splits only an opaque id;
the host (credit centre) holds the table opaque id -> (feature, threshold, direction of a
missing value; :mod:`protocols.gbdt.plain`). Neither half can
score a row alone, which is the point: scoring goes through the direction-bit protocol of
:mod:`protocols.secureboost.scoring`. Both halves serialise with :mod:`protocols.common.wire` (no
pickle) so a node can store and release its part with a hash in the ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.common import wire
from protocols.gbdt.plain import OWNER_GUEST, OWNER_HOST, Tree, raw_go_left, sigmoid

HOST_MODEL_KIND = "secureboost-host-model/2"  # /2: learned direction of missing values, level sets


class ModelError(ValueError):
    """A model part is malformed or does not match the data or the other part."""


@dataclass
class _GuestModelWire:
    kind: str
    base_score: float
    n_features: int
    trees: list


@dataclass
class _HostModelWire:
    kind: str
    n_features: int
    split_ids: np.ndarray
    features: np.ndarray
    thresholds: np.ndarray
    trees: np.ndarray
    missing_left: np.ndarray
    cat_start: np.ndarray
    cat_count: np.ndarray
    cat_levels: np.ndarray


_HOST_MODEL_V1_FIELDS = ("kind", "n_features", "split_ids", "features", "thresholds", "trees")
# a host model written before issue 17 (no missing direction: a NaN went right at every split)
_HostModelWireV1 = dataclasses.make_dataclass(
    "_HostModelWire",
    [(f.name, f.type) for f in dataclasses.fields(_HostModelWire) if f.name in _HOST_MODEL_V1_FIELDS],
)


def categorical_arrays(levels: list[list[float]], is_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, count, flat codes) of each split's left level set; start -1 for a threshold split."""
    counts = np.array([len(lv) for lv in levels], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts.size else counts
    flat = np.array([v for lv in levels for v in lv], dtype=np.float64)
    return np.where(np.asarray(is_cat, dtype=bool), starts, -1), counts, flat


@dataclass
class SecureBoostGuestModel:
    """The guest's part: tree structures, leaf values, guest splits, opaque host split ids."""

    base_score: float
    n_features: int
    trees: list[Tree]

    @property
    def host_split_ids(self) -> np.ndarray:
        """Every opaque host split id used by the trees (sorted, unique)."""
        ids = [t.split_id[t.owner == OWNER_HOST] for t in self.trees]
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.uint64)

    def decision_function(self, X: np.ndarray, host_left: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
        """Raw scores; ``host_left(split_id, rows)`` gives the host's direction (True = left)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(f"guest model expects {self.n_features} feature columns, got shape {X.shape}")
        raw = np.full(X.shape[0], self.base_score)
        for tree in self.trees:

            def go_left(k: int, rows: np.ndarray, tree: Tree = tree) -> np.ndarray:
                if tree.owner[k] == OWNER_GUEST:
                    x = X[rows, tree.feature[k]]
                    return raw_go_left(x, tree.threshold[k], bool(tree.missing_left[k]), tree.levels(k))
                return host_left(int(tree.split_id[k]), rows)

            raw = raw + tree.value[tree.leaves(go_left, X.shape[0])]
        return raw

    def to_bytes(self) -> bytes:
        return wire.encode(
            _GuestModelWire(
                "secureboost-guest-model/1", float(self.base_score), self.n_features, [t.to_dict() for t in self.trees]
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SecureBoostGuestModel:
        m = wire.decode(data, _GuestModelWire)
        if m.kind != "secureboost-guest-model/1":
            raise ModelError(f"not a SecureBoost guest model: {m.kind!r}")
        return cls(float(m.base_score), int(m.n_features), [Tree.from_dict(t) for t in m.trees])


@dataclass
class SecureBoostHostModel:
    """The host's part: opaque split id -> (feature, threshold, missing direction), and its tree.

    ``missing_left[i]``: a missing value goes left at split ``i`` (learned in training; default
    all False, i.e. right, as for a model trained before issue 17). A categorical split has
    ``cat_start[i] >= 0``: a row goes left iff its code is one of
    ``cat_levels[cat_start[i] : cat_start[i] + cat_count[i]]`` (or it is missing and
    ``missing_left[i]``); ``thresholds[i]`` is NaN.
    """

    n_features: int
    split_ids: np.ndarray
    features: np.ndarray
    thresholds: np.ndarray
    trees: np.ndarray
    missing_left: np.ndarray | None = None
    cat_start: np.ndarray | None = None
    cat_count: np.ndarray | None = None
    cat_levels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.split_ids = np.asarray(self.split_ids, dtype=np.uint64)
        self.features = np.asarray(self.features, dtype=np.int32)
        self.thresholds = np.asarray(self.thresholds, dtype=np.float64)
        self.trees = np.asarray(self.trees, dtype=np.int32)
        if self.missing_left is None:
            self.missing_left = np.zeros(self.split_ids.size, dtype=bool)
        self.missing_left = np.asarray(self.missing_left, dtype=bool)
        if self.missing_left.shape != self.split_ids.shape:
            raise ModelError("host model: one missing direction per split id expected")
        n = self.split_ids.size
        self.cat_start = np.asarray(np.full(n, -1) if self.cat_start is None else self.cat_start, dtype=np.int64)
        self.cat_count = np.asarray(np.zeros(n) if self.cat_count is None else self.cat_count, dtype=np.int64)
        self.cat_levels = np.asarray(np.zeros(0) if self.cat_levels is None else self.cat_levels, dtype=np.float64)
        if self.cat_start.shape != (n,) or self.cat_count.shape != (n,):
            raise ModelError("host model: one categorical entry per split id expected")
        if (self.cat_start + self.cat_count > self.cat_levels.size).any():
            raise ModelError("host model: a categorical split points past its level codes")
        if np.unique(self.split_ids).size != self.split_ids.size:
            raise ModelError("host model has duplicate split ids")
        self._index = {int(s): i for i, s in enumerate(self.split_ids.tolist())}

    def lookup(self, split_id: int) -> tuple[int, float]:
        """(feature, threshold) of an opaque id; an unknown id is an error."""
        i = self._index.get(int(split_id))
        if i is None:
            raise ModelError(f"unknown host split id {int(split_id)}")
        return int(self.features[i]), float(self.thresholds[i])

    def goes_left_when_missing(self, split_id: int) -> bool:
        """The learned direction of a missing value at an opaque id (host-side only)."""
        assert self.missing_left is not None
        return bool(self.missing_left[self.positions(np.array([split_id], dtype=np.uint64))[0]])

    def positions(self, split_ids: np.ndarray) -> np.ndarray:
        out = np.empty(len(split_ids), dtype=np.int64)
        for j, s in enumerate(np.asarray(split_ids, dtype=np.uint64).tolist()):
            i = self._index.get(int(s))
            if i is None:
                raise ModelError(f"unknown host split id {int(s)}")
            out[j] = i
        return out

    def directions(self, X: np.ndarray, rows: np.ndarray, split_ids: np.ndarray) -> np.ndarray:
        """``X[rows[i], f] <= t`` for the (f, t) of ``split_ids[i]`` (True = left); NaN goes the learned way."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ModelError(f"host model expects {self.n_features} feature columns, got shape {X.shape}")
        pos = self.positions(split_ids)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
            raise ModelError(f"row index out of range [0, {X.shape[0]})")
        assert self.missing_left is not None and self.cat_start is not None
        x = X[rows, self.features[pos]]
        go = (x <= self.thresholds[pos]) | (self.missing_left[pos] & np.isnan(x))
        for i in np.unique(pos[self.cat_start[pos] >= 0]).tolist():  # categorical: a level set
            at = pos == i
            go[at] = raw_go_left(x[at], np.nan, bool(self.missing_left[i]), self.levels(i))
        return go

    def levels(self, i: int) -> np.ndarray | None:
        """The left level codes of the split at position ``i`` (None for a threshold split)."""
        assert self.cat_start is not None and self.cat_count is not None and self.cat_levels is not None
        a = int(self.cat_start[i])
        return None if a < 0 else self.cat_levels[a : a + int(self.cat_count[i])]

    def to_bytes(self) -> bytes:
        assert self.missing_left is not None
        assert self.cat_start is not None and self.cat_count is not None and self.cat_levels is not None
        return wire.encode(
            _HostModelWire(
                HOST_MODEL_KIND,
                self.n_features,
                self.split_ids,
                self.features,
                self.thresholds,
                self.trees,
                self.missing_left,
                self.cat_start,
                self.cat_count,
                self.cat_levels,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SecureBoostHostModel:
        try:
            m = wire.decode(data, _HostModelWire)
        except wire.WireError:
            old: Any = wire.decode(data, _HostModelWireV1)
            if old.kind != "secureboost-host-model/1":
                raise ModelError(f"not a SecureBoost host model: {old.kind!r}") from None
            return cls(int(old.n_features), old.split_ids, old.features, old.thresholds, old.trees)
        if m.kind != HOST_MODEL_KIND:
            raise ModelError(f"not a SecureBoost host model: {m.kind!r}")
        return cls(
            int(m.n_features),
            m.split_ids,
            m.features,
            m.thresholds,
            m.trees,
            m.missing_left,
            m.cat_start,
            m.cat_count,
            m.cat_levels,
        )


def predict_local(
    guest: SecureBoostGuestModel, host: SecureBoostHostModel, X_guest: np.ndarray, X_host: np.ndarray
) -> np.ndarray:
    """Probabilities from both halves in one process: for tests and evaluation only.

    In deployment the halves live on different nodes and scoring goes through
    :class:`protocols.secureboost.scoring.SecureBoostScoringGuest`.
    """
    X_host = np.asarray(X_host, dtype=np.float64)
    if len(X_host) != len(X_guest):
        raise ModelError(f"{len(X_guest)} guest rows but {len(X_host)} host rows (align by PSI first)")
    raw = guest.decision_function(
        X_guest, lambda sid, rows: host.directions(X_host, rows, np.full(rows.size, sid, dtype=np.uint64))
    )
    return sigmoid(raw)
