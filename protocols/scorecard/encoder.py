"""One party's WOE encoder: its kept columns' fine bins and WOE tables, as a JSON document.

Why a separate object: after federated binning each party must WOE-encode *its own* columns in
three places that do not share memory (hetero-LR training on the aligned rows, scoring of the
held-out rows, and joint inference of new applicants from the released model part). The
encoder is what the party keeps and releases for that: its own cut points / level groups
(:class:`~protocols.binning.fine.ColumnBins`) and the WOE of each final bin. It never leaves
the party's node except inside its own released model part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocols.binning.fine import ColumnBins
from protocols.binning.woe import ColumnWoe

ENCODER_TYPE = "woe"


class EncoderError(ValueError):
    """A WOE encoder document is malformed or does not fit the data; the message names the column."""


@dataclass
class WoeColumn:
    """One kept column: how raw values map to fine bins, fine bins to final bins, final bins to WOE."""

    bins: ColumnBins
    group: np.ndarray  # int32, fine bin -> final bin (-1: empty fine bin, WOE 0)
    woe: np.ndarray  # float64, per final bin
    events: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the bank's own columns only
    nonevents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def name(self) -> str:
        return self.bins.name

    def column_woe(self) -> ColumnWoe:
        return ColumnWoe(self.name, self.bins.kind, self.group, self.woe, self.events, self.nonevents, float("nan"))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.column_woe().transform(self.bins.codes(x))


@dataclass
class WoeEncoder:
    """The kept columns of one party, in the order of its LR coefficients."""

    columns: list[WoeColumn]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @classmethod
    def from_binning(
        cls, kept: list[str], bins: dict[str, ColumnBins], woe: dict[str, ColumnWoe], *, with_counts: bool = False
    ) -> WoeEncoder:
        """From a finished binning party's ``column_bins`` and WOE tables (``with_counts``: keep the
        per-bin event counts, which only the bank has, for its points table)."""
        cols = []
        for c in kept:
            w = woe[c]
            cols.append(
                WoeColumn(
                    bins[c],
                    np.asarray(w.group, dtype=np.int32),
                    np.asarray(w.woe, dtype=np.float64),
                    np.asarray(w.events, dtype=np.int64) if with_counts else np.zeros(0, dtype=np.int64),
                    np.asarray(w.nonevents, dtype=np.int64) if with_counts else np.zeros(0, dtype=np.int64),
                )
            )
        return cls(cols)

    def select(self, X: np.ndarray, feature_names: list[str]) -> np.ndarray:
        """The encoder's columns (raw values) out of a table with ``feature_names``, in encoder order."""
        have = {n: j for j, n in enumerate(feature_names)}
        missing = [n for n in self.names if n not in have]
        if missing:
            raise EncoderError(f"the data lacks column(s) {missing} that the WOE encoder uses")
        return np.asarray(X, dtype=np.float64)[:, [have[n] for n in self.names]]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """WOE matrix of raw rows ``X`` holding exactly the encoder's columns, in its order."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.columns):
            raise EncoderError(f"expected {len(self.columns)} columns {self.names}, got shape {X.shape}")
        out = np.empty(X.shape, dtype=np.float64)
        for j, col in enumerate(self.columns):
            out[:, j] = col.transform(X[:, j])
        return out

    # -- JSON (node state and the released model part) ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": ENCODER_TYPE,
            "columns": [
                {
                    "name": c.name,
                    "kind": c.bins.kind,
                    "edges": [float(e) for e in c.bins.edges],
                    "level_bin": [int(v) for v in c.bins.level_bin],
                    "missing_into": int(c.bins.missing_into),
                    "group": c.group.astype(int).tolist(),
                    "woe": c.woe.astype(float).tolist(),
                    "events": c.events.astype(int).tolist(),
                    "nonevents": c.nonevents.astype(int).tolist(),
                }
                for c in self.columns
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WoeEncoder:
        if d.get("type") != ENCODER_TYPE:
            raise EncoderError(f"not a WOE encoder (type {d.get('type')!r})")
        cols = []
        for i, c in enumerate(d.get("columns", [])):
            try:
                bins = ColumnBins(
                    str(c["name"]),
                    str(c["kind"]),
                    edges=[float(e) for e in c["edges"]],
                    level_bin=[int(v) for v in c["level_bin"]],
                    missing_into=int(c["missing_into"]),
                )
                group = np.asarray(c["group"], dtype=np.int32)
                woe = np.asarray(c["woe"], dtype=np.float64)
                col = WoeColumn(
                    bins,
                    group,
                    woe,
                    np.asarray(c["events"], dtype=np.int64),
                    np.asarray(c["nonevents"], dtype=np.int64),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise EncoderError(f"WOE encoder column {i}: {exc}") from None
            if group.size != bins.n_bins or group.max(initial=-1) >= woe.size or not np.isfinite(woe).all():
                raise EncoderError(f"WOE encoder column {bins.name!r}: bin map and WOE table do not fit")
            cols.append(col)
        return cls(cols)
