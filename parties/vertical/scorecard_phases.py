"""Phases of ``mode = "scorecard"`` after PSI, consent and the split (docs/scorecard.md):

* ``binning``      -- federated WOE/IV binning (:mod:`protocols.binning`) on the aligned training
  rows, raw values: the bank sends its Paillier-encrypted labels, the centre answers per fine bin
  of each of its columns with a row count and an encrypted label sum, the bank decrypts the
  counts, merges bins, selects columns by IV and tells the centre which of *its* columns are kept
  and their WOE per bin. Each party keeps its own WOE encoder (``woe_encoder``); the bank writes
  ``iv_report.{csv,json}`` (every column of both parties) to its own node directory.
* ``scorecard_lr`` -- the two-party Paillier LR of :mod:`protocols.hetero_lr` on each party's
  WOE-encoded kept columns (no validation rows: the held-out rows are the test split).
* ``points``       -- no message: each party turns its own coefficients and WOE tables into its
  points table (``points.{csv,json}`` in its own node directory; the bank's holds the base
  points). Only the table's SHA-256 and size are reported.
* ``scorecard_score`` -- joint scoring of the test rows (the hetero-LR scorer: the centre's
  partial score travels sealed to the bank, i.e. minus its points total divided by the scale
  factor); the bank writes the score bands and score-to-probability table to its node.
* ``scorecard_release`` -- each party's model part (coefficients, its WOE encoder as the
  ``preprocessor``, the bank's points scale) for joint inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedcredit import metrics
from parties.common.node import NodeRuntime
from parties.vertical.phase import (
    COMMON_ROWS,
    MODEL,
    TEST_MASK,
    VAL_MASK,
    Phase,
    RestartablePhase,
    aligned_splits,
    get_array,
    get_json,
)
from parties.vertical.training_phases import FrozenInputs, HeteroLRPhase, LocalPhase, _Done
from protocols.binning.bank import BinningBank
from protocols.binning.centre import BinningCentre
from protocols.binning.config import BinningConfig
from protocols.hetero_lr import BankLR, BankScorer, CentreLR, CentreScorer, HeteroLRConfig
from protocols.scorecard.config import ScorecardConfig
from protocols.scorecard.encoder import WoeEncoder
from protocols.scorecard.local import PointsTable, describe_bins
from protocols.scorecard.points import probability_table, score_bands

WOE_ENCODER = "woe_encoder"  # node state: JSON of this party's WoeEncoder (its kept columns)
BinningParty = BinningBank | BinningCentre


def write_table(rows: list[dict], path: Path) -> None:
    """``path``.json and ``path``.csv of the same rows (the exports a model risk team reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2, ensure_ascii=False, default=float), "utf-8")
    pd.DataFrame(rows).to_csv(path.with_suffix(".csv"), index=False, encoding="utf-8")


def _masks(node: NodeRuntime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(own row of each aligned position, test mask, validation mask)."""
    return get_array(node, COMMON_ROWS), get_array(node, TEST_MASK), get_array(node, VAL_MASK)


def encoder(node: NodeRuntime) -> WoeEncoder:
    raw = node.get(WOE_ENCODER)
    if raw is None:
        raise RuntimeError(f"node {node.name} has no WOE encoder: the binning phase did not run")
    return WoeEncoder.from_dict(json.loads(str(raw)))


# -- binning ----------------------------------------------------------------------------------


class BinningPhase(Phase[BinningParty]):
    """Federated WOE/IV binning on the aligned training rows (raw values, missing as NaN)."""

    @staticmethod
    def _inputs(node: NodeRuntime) -> tuple[np.ndarray, list[str], np.ndarray | None, BinningConfig, dict[str, int]]:
        data = node.data()
        rows, test, val = _masks(node)
        train = rows[~test & ~val]
        y = None if data.labels is None else data.labels[train].astype(np.int64)
        cats = {k: len(v) for k, v in data.categorical.items()}
        return data.features[train], list(data.feature_names), y, node.scenario.settings(BinningConfig), cats

    def create(self, node: NodeRuntime, params: dict) -> BinningParty:
        X, names, y, cfg, cats = self._inputs(node)
        if node.role == "bank":
            assert y is not None
            return BinningBank(node.name, params["peer"], X, names, y, cfg, categorical=cats)
        return BinningCentre(node.name, params["peer"], X, names, cfg, categorical=cats)

    def restore(self, node: NodeRuntime, state: bytes) -> BinningParty:
        X, names, y, cfg, cats = self._inputs(node)
        if node.role == "bank":
            assert y is not None
            return BinningBank.from_state(state, X, names, y, cfg, categorical=cats)
        return BinningCentre.from_state(state, X, names, cfg, categorical=cats)

    def dump(self, party: BinningParty) -> bytes:
        return party.to_state()

    def finish(self, node: NodeRuntime, party: BinningParty) -> dict:
        if isinstance(party, BinningBank):
            enc = WoeEncoder.from_binning(party.kept_own, party.column_bins, party.own, with_counts=True)
            write_table(party.iv_report(), node.dir / "iv_report")
            summary = {
                "columns": len(party.names),
                "kept": len(party.kept_own),
                "centre_columns": len(party.centre),
                "centre_kept": len(party.kept_centre),
            }
        else:
            enc = WoeEncoder.from_binning(party.kept, party.column_bins, party.woe)
            summary = {"columns": len(party.names), "kept": len(party.kept)}
        if not enc.columns:
            raise RuntimeError(f"{node.role} {node.name!r}: no column of its own passed the IV selection")
        node.put(WOE_ENCODER, json.dumps(enc.to_dict()))
        return summary


# -- hetero-LR on WOE -------------------------------------------------------------------------

_WOE = FrozenInputs(WOE_ENCODER)


def woe_aligned(node: NodeRuntime) -> dict[str, np.ndarray]:
    """This party's WOE-encoded kept columns (and the bank's labels) per split, frozen and kept per
    process for the same inputs (:class:`~parties.vertical.training_phases.FrozenInputs`: the
    hetero-LR parties then restore in O(1) rows)."""

    def build() -> dict[str, np.ndarray]:
        enc, names = encoder(node), node.data().feature_names
        return aligned_splits(node, lambda F: enc.transform(enc.select(F, names)))

    return _WOE.get(node, build)


def scorecard_lr_config(node: NodeRuntime) -> HeteroLRConfig:
    """``[lr]`` without validation or early stopping: the held-out rows are the test split."""
    cfg = node.scenario.settings(HeteroLRConfig)
    return dataclasses.replace(cfg, validation_fraction=0.0, early_stopping_patience=0)


class ScorecardLRPhase(HeteroLRPhase):
    """The hetero-LR phase on WOE-encoded kept columns (no validation rows)."""

    def features(self, node: NodeRuntime) -> dict[str, np.ndarray]:
        return woe_aligned(node)

    def create(self, node: NodeRuntime, params: dict) -> Any:
        d, cfg = self.features(node), scorecard_lr_config(node)
        if node.role == "bank":
            return BankLR(node.name, params["peer"], d["X_train"], d["y_train"], cfg)
        return CentreLR(node.name, params["peer"], d["X_train"], cfg)

    def restore(self, node: NodeRuntime, state: bytes) -> Any:
        d = self.features(node)
        if node.role == "bank":
            return BankLR.from_state(state, d["X_train"], d["y_train"])
        return CentreLR.from_state(state, d["X_train"])


# -- points -----------------------------------------------------------------------------------


def _scale(node: NodeRuntime) -> ScorecardConfig:
    return node.scenario.settings(ScorecardConfig)


class PointsPhase(LocalPhase):
    """Each party computes and keeps its own points table (no message; relayed for the record)."""

    def finish(self, node: NodeRuntime, party: _Done) -> dict:
        table, base = points_table(node)
        rows = table.rows + ([{"party": "bank", "column": "(base)", "points": base}] if base is not None else [])
        write_table(rows, node.dir / "points")
        body = (node.dir / "points.json").read_bytes()
        return {"columns": len({r["column"] for r in table.rows}), "points_sha256": hashlib.sha256(body).hexdigest()}


def points_table(node: NodeRuntime) -> tuple[PointsTable, float | None]:
    """This party's points table from its own model part and WOE tables (and, at the bank, the
    base points from the intercept)."""
    model, enc, scale = get_json(node, MODEL), encoder(node), _scale(node).scale
    coef = [float(c) for c in model["coef"]]
    if len(coef) != len(enc.columns):
        raise RuntimeError(f"node {node.name}: {len(coef)} coefficients for {len(enc.columns)} WOE columns")
    levels = node.data().categorical
    table = PointsTable(node.role)
    for col, b in zip(enc.columns, coef):
        cw = col.column_woe()
        table.add(col.name, describe_bins(col.bins, cw, levels.get(col.name)), cw, b, scale)
    base = scale.base_points(float(model["intercept"])) if node.role == "bank" else None
    return table, base


# -- joint scoring of the test rows ---------------------------------------------------------------


class ScorecardScorePhase(RestartablePhase[BankScorer | CentreScorer]):
    """The bank learns the joint scores of the test rows (base + its points + the centre's points,
    the centre's sum arriving sealed, one number per row) and writes bands and metrics."""

    def create(self, node: NodeRuntime, params: dict) -> BankScorer | CentreScorer:
        cls = BankScorer if node.role == "bank" else CentreScorer
        return cls(node.name, params["peer"], np.asarray(get_json(node, MODEL)["weights"]), woe_aligned(node)["X_test"])

    def restore(self, node: NodeRuntime, state: bytes) -> BankScorer | CentreScorer:
        cls = BankScorer if node.role == "bank" else CentreScorer
        return cls.from_state(state, woe_aligned(node)["X_test"])

    def finish(self, node: NodeRuntime, party: BankScorer | CentreScorer) -> dict:
        if not isinstance(party, BankScorer):
            return {}
        y = woe_aligned(node)["y_test"]
        cfg = _scale(node)
        p = party.scores
        points = cfg.scale.score(p)
        used = np.asarray(node.data().ids)[get_array(node, COMMON_ROWS)].astype(str)
        np.savez_compressed(
            node.dir / "test_scores.npz", y=np.asarray(y, dtype=np.int8), score=p, points=points, aligned_ids=used
        )
        write_table(score_bands(points, y, cfg.bands), node.dir / "bands")
        write_table(probability_table(cfg.scale), node.dir / "score_probability")
        m = metrics.summary(y, p)
        return {"metrics": {k: round(float(v), 6) for k, v in m.items()}, "rows": int(len(y))}


# -- release ----------------------------------------------------------------------------------


class ScorecardReleasePhase(LocalPhase):
    """Each party writes its own model part: LR coefficients on WOE, its WOE encoder (as the
    ``preprocessor`` joint inference applies) and, at the bank, the points scale."""

    def finish(self, node: NodeRuntime, party: _Done) -> dict:
        if node.get(MODEL) is None:
            raise RuntimeError(f"node {node.name} has no trained model to release")
        enc = encoder(node)
        part: dict[str, Any] = {
            "party": node.name,
            "role": node.role,
            "feature_names": enc.names,
            "preprocessor": enc.to_dict(),
            "model": get_json(node, MODEL),
        }
        if node.role == "bank":
            cfg = _scale(node)
            part["scorecard"] = {
                "base_score": cfg.base_score,
                "base_odds": cfg.base_odds,
                "pdo": cfg.pdo,
                "base_points": cfg.scale.base_points(float(part["model"]["intercept"])),
            }
        body = json.dumps(part, indent=1, sort_keys=True).encode()
        path = node.dir / "model.json"
        path.write_bytes(body)
        return {"model_sha256": hashlib.sha256(body).hexdigest(), "model_path": str(path)}
