"""Phases after alignment: train (hetero-LR or SecureBoost), ``score`` the held-out rows, ``release``.

Training reads the aligned, preprocessed features (:func:`parties.vertical.phase.aligned_features`)
and leaves this party's model part in node state (``model``); scoring runs the joint prediction
of the test rows with it (the bank computes the metrics); the release writes each party's own
model part to its own storage and reports only its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from fedcredit import metrics
from parties.common.node import NodeRuntime
from parties.vertical.phase import (
    COMMON_ROWS,
    MODEL,
    PREPROCESSOR,
    TEST_MASK,
    VAL_MASK,
    Phase,
    RestartablePhase,
    aligned_features,
    get_array,
    get_json,
)
from protocols import secureboost as sb
from protocols.common.party import Envelope, Party, RestartableParty
from protocols.common.settings import Settings
from protocols.hetero_lr import BankLR, BankScorer, CentreLR, CentreScorer, HeteroLRConfig
from protocols.hetero_lr.memo import frozen

# -- train ------------------------------------------------------------------------------------


class _TwoPartyTraining(RestartablePhase[RestartableParty]):
    """A training protocol between the bank (labels) and the centre (features only).

    Both train on their aligned training rows and check progress on the validation rows; the
    protocol's settings are the scenario's ``config_type`` section (seeded by the run's seed).
    """

    count_key: ClassVar[str]  # what the summary calls the number of history entries
    config_type: ClassVar[type[Settings]]  # the protocol's scenario section
    bank_type: ClassVar[Any]  # party classes; constructors differ per protocol, so untyped here
    centre_type: ClassVar[Any]

    def create(self, node: NodeRuntime, params: dict) -> RestartableParty:
        cfg = node.scenario.settings(self.config_type)  # parsed and checked at load; seed defaults to [run]
        d = self.features(node)
        if node.role == "bank":
            return self.bank_type(
                node.name, params["peer"], d["X_train"], d["y_train"], cfg, X_val=d["X_val"], y_val=d["y_val"]
            )
        return self.centre_type(node.name, params["peer"], d["X_train"], cfg, X_val=d["X_val"])

    def restore(self, node: NodeRuntime, state: bytes) -> RestartableParty:
        d = self.features(node)
        if node.role == "bank":
            return self.bank_type.from_state(state, d["X_train"], d["y_train"], X_val=d["X_val"], y_val=d["y_val"])
        return self.centre_type.from_state(state, d["X_train"], X_val=d["X_val"])

    def features(self, node: NodeRuntime) -> dict[str, np.ndarray]:
        """The party's aligned inputs (a protocol whose parties memoise may return frozen ones)."""
        return aligned_features(node)

    def progress(self, node: NodeRuntime, party: RestartableParty) -> dict:
        hist = party.history
        if not hist:
            return {}
        return {"metrics": {k: v for k, v in hist[-1].items() if isinstance(v, (int, float)) and v == v}}

    def finish(self, node: NodeRuntime, party: RestartableParty) -> dict:
        node.put(MODEL, json.dumps(self.model_part(node, party)))
        hist = party.history
        return {self.count_key: len(hist), "history": hist if node.role == "bank" else [], **self.extra(node, party)}

    @abstractmethod
    def model_part(self, node: NodeRuntime, party: RestartableParty) -> dict:
        """This party's model part as JSON (kept in node state until the release)."""

    def extra(self, node: NodeRuntime, party: RestartableParty) -> dict:
        """More of the finish summary (aggregate facts only)."""
        return {}


class HeteroLRPhase(_TwoPartyTraining):
    """Two-party Paillier logistic regression."""

    count_key = "epochs"
    config_type, bank_type, centre_type = HeteroLRConfig, BankLR, CentreLR

    def model_part(self, node: NodeRuntime, party: RestartableParty) -> dict:
        return {"type": "hetero_lr", **party.model}

    def features(self, node: NodeRuntime) -> dict[str, np.ndarray]:
        """Frozen aligned inputs, built once per process: the parties then restore in O(1) rows."""
        return _frozen_aligned(node)


class FrozenInputs:
    """Per-node frozen arrays built from a phase's inputs, reused across the steps of a process.

    An entry is kept per node (name, role) and used only for the same SHA-256 over the phase
    inputs in node state (common rows, split masks, and the ``encoder_key`` entry: the fitted
    preprocessor or WOE encoder) and the very data object ``node.data()`` returned (its
    per-process cache; the entry keeps it alive). Anything else changed means a fresh build, and
    the party's restore still compares its data digest with the state's. A process hosting many
    runs keeps only the latest ``keep`` nodes' inputs.
    """

    def __init__(self, encoder_key: str, keep: int = 4) -> None:
        self.encoder_key, self.keep = encoder_key, keep
        self._memo: dict[tuple[str, str], tuple[str, Any, dict[str, np.ndarray]]] = {}

    def get(self, node: NodeRuntime, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The frozen arrays for ``node``'s current inputs: ``build()`` frozen, or the kept ones."""
        data = node.data()
        h = hashlib.sha256()
        for name in (COMMON_ROWS, TEST_MASK, VAL_MASK):
            raw = node.get_bytes(name) or b""
            h.update(len(raw).to_bytes(8, "big") + raw)
        h.update(str(node.get(self.encoder_key)).encode())
        who, inputs = (node.name, node.role), h.hexdigest()
        hit = self._memo.get(who)
        if hit is not None and hit[0] == inputs and hit[1] is data:
            return hit[2]
        d = {k: frozen(v) for k, v in build().items()}
        self._memo.pop(who, None)
        self._memo[who] = (inputs, data, d)
        while len(self._memo) > self.keep:
            self._memo.pop(next(iter(self._memo)))
        return d


_ALIGNED = FrozenInputs(PREPROCESSOR)


def _frozen_aligned(node: NodeRuntime) -> dict[str, np.ndarray]:
    """:func:`aligned_features` as :func:`~protocols.hetero_lr.memo.frozen` arrays, reused across
    steps (:class:`FrozenInputs`)."""
    return _ALIGNED.get(node, lambda: aligned_features(node))


class SecureBoostPhase(_TwoPartyTraining):
    """Bank = guest (labels, Paillier key), centre = host; each keeps only its own splits."""

    count_key = "trees"
    config_type, bank_type, centre_type = sb.SecureBoostConfig, sb.SecureBoostGuest, sb.SecureBoostHost

    def create(self, node: NodeRuntime, params: dict) -> RestartableParty:
        """As every training phase, plus this party's declared categorical columns (split by level
        sets; the restored state's bins remember them)."""
        cfg = node.scenario.settings(self.config_type)
        d = self.features(node)
        data = node.data()
        cats = [j for j, n in enumerate(data.feature_names) if n in data.categorical]
        if node.role == "bank":
            return self.bank_type(
                node.name,
                params["peer"],
                d["X_train"],
                d["y_train"],
                cfg,
                X_val=d["X_val"],
                y_val=d["y_val"],
                categorical=cats,
            )
        return self.centre_type(node.name, params["peer"], d["X_train"], cfg, X_val=d["X_val"], categorical=cats)

    def model_part(self, node: NodeRuntime, party: RestartableParty) -> dict:
        model = party.model
        return {
            "type": "secureboost",
            "role": node.role,
            "n_trees": len(getattr(model, "trees", [])) if node.role == "bank" else None,
            "model_hex": model.to_bytes().hex(),
        }

    def extra(self, node: NodeRuntime, party: RestartableParty) -> dict:
        if not isinstance(party, (sb.SecureBoostGuest, sb.SecureBoostHost)):
            raise TypeError(f"node {node.name}: not a SecureBoost party: {type(party).__name__}")
        return {"feature_importance": _named_importance(party.feature_importance(), node)}


def _named_importance(imp: dict, node: NodeRuntime) -> dict:
    """Attach this party's own feature names to per-feature lists (never the other side's)."""
    names = node.data().feature_names

    def name(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: name(x) for k, x in v.items()}
        if isinstance(v, list) and len(v) == len(names):
            return dict(zip(names, v))
        return v

    return name(imp)


# -- score: joint scoring of the held-out rows ---------------------------------------------


def _secureboost_scorer(
    node: NodeRuntime, peer: str, model: dict, X: np.ndarray, *, state: bytes | None = None
) -> RestartableParty:
    raw = bytes.fromhex(model["model_hex"])
    mode = node.scenario.settings(sb.SecureBoostConfig).scoring_mode
    if node.role == "bank":
        gm = sb.SecureBoostGuestModel.from_bytes(raw)
        if state is not None:
            return sb.SecureBoostScoringGuest.from_state(state, gm, X)
        return sb.SecureBoostScoringGuest(node.name, peer, gm, X, mode=mode)
    hm = sb.SecureBoostHostModel.from_bytes(raw)
    if state is not None:
        return sb.SecureBoostScoringHost.from_state(state, hm, X)
    return sb.SecureBoostScoringHost(node.name, peer, hm, X)


class ScorePhase(RestartablePhase[RestartableParty]):
    """The bank learns the joint scores of the test rows and computes metrics (documented leak:
    the centre's partial scores of scored rows, as in any joint inference)."""

    def create(self, node: NodeRuntime, params: dict) -> RestartableParty:
        model = get_json(node, MODEL)
        X = aligned_features(node)["X_test"]
        if model["type"] == "hetero_lr":
            cls = BankScorer if node.role == "bank" else CentreScorer
            return cls(node.name, params["peer"], np.asarray(model["weights"]), X)
        return _secureboost_scorer(node, params["peer"], model, X)

    def restore(self, node: NodeRuntime, state: bytes) -> RestartableParty:
        model = get_json(node, MODEL)
        X = aligned_features(node)["X_test"]
        if model["type"] == "hetero_lr":
            cls = BankScorer if node.role == "bank" else CentreScorer
            return cls.from_state(state, X)
        return _secureboost_scorer(node, "", model, X, state=state)

    def finish(self, node: NodeRuntime, party: RestartableParty) -> dict:
        if node.role != "bank":
            return {}
        if not isinstance(party, (BankScorer, sb.SecureBoostScoringGuest)):
            raise TypeError(f"bank {node.name}: not a scoring party: {type(party).__name__}")
        y = aligned_features(node)["y_test"]
        # The label holder keeps its test scores in its own storage (never sent) for its run report.
        # With them, the ids of the rows this run used (the consented intersection: the bank's own
        # knowledge), so a simulation's pooled reference is computed on exactly the same rows.
        used = np.asarray(node.data().ids)[get_array(node, COMMON_ROWS)].astype(str)
        np.savez_compressed(
            node.dir / "test_scores.npz", y=np.asarray(y, dtype=np.int8), score=party.scores, aligned_ids=used
        )
        m = metrics.summary(y, party.scores)
        return {"metrics": {k: round(float(v), 6) for k, v in m.items()}, "rows": int(len(y))}


# -- release ----------------------------------------------------------------------------


class _Done(Party):
    """Phases without messages (release) still go through the relay for a signed record."""

    def __init__(self, name: str):
        self.name = name

    def start(self) -> list[Envelope]:
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        return []

    @property
    def finished(self) -> bool:
        return True


class LocalPhase(Phase[_Done]):
    """A phase in which each party only works on its own node (no message to its peer); it still
    goes through the relay so its outcome is in the signed ledger. Subclasses write ``finish``."""

    def create(self, node: NodeRuntime, params: dict) -> _Done:
        return _Done(node.name)

    def dump(self, party: _Done) -> bytes:
        return party.name.encode()

    def restore(self, node: NodeRuntime, state: bytes) -> _Done:
        return _Done(state.decode())


class ReleasePhase(LocalPhase):
    """Each party writes ITS OWN model part (and preprocessing) to its own storage."""

    def finish(self, node: NodeRuntime, party: _Done) -> dict:
        if node.get(MODEL) is None:
            raise RuntimeError(f"node {node.name} has no trained model to release")
        part = {
            "party": node.name,
            "role": node.role,
            "feature_names": node.data().feature_names,
            "preprocessor": get_json(node, PREPROCESSOR),
            "model": get_json(node, MODEL),
        }
        body = json.dumps(part, indent=1, sort_keys=True).encode()
        path = node.dir / "model.json"
        path.write_bytes(body)
        return {"model_sha256": hashlib.sha256(body).hexdigest(), "model_path": str(path)}
