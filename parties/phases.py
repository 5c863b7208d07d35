"""Node-side adapters: build, persist and finish each protocol phase from a node's own data.

An adapter knows how to turn a node's data plus what earlier phases left in ``context.state``
(intersection rows, split masks, fitted preprocessing, model) into the protocol's party object,
and how to persist and finish it. The protocol logic itself lives in :mod:`protocols`.

State keys a node keeps (node-local, never sent): ``common_rows`` (own row index of each aligned
position), ``test_mask`` / ``val_mask`` (over aligned positions), ``preprocessor`` (JSON),
``model`` (JSON of this party's model part).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fedcredit.features import LocalPreprocessor
from parties.node import NodeRuntime
from protocols import wire
from protocols.alignment import SplitPlan, SplitReceiver, SplitSender, make_plan
from protocols.party import Party


class Phase(ABC):
    @abstractmethod
    def create(self, node: NodeRuntime, params: dict) -> Party: ...

    @abstractmethod
    def restore(self, node: NodeRuntime, state: bytes) -> Party: ...

    @abstractmethod
    def dump(self, party: Party) -> bytes: ...

    def progress(self, party: Party) -> dict:
        """Aggregate numbers to report after a step (never per-sample values)."""
        return {}

    @abstractmethod
    def finish(self, node: NodeRuntime, party: Party) -> dict: ...


# -- helpers over persisted node state ---------------------------------------------------

@dataclass
class _Arr:
    a: np.ndarray


def put_array(node: NodeRuntime, key: str, arr: np.ndarray) -> None:
    node.put(key, wire.encode(_Arr(np.ascontiguousarray(arr))))


def get_array(node: NodeRuntime, key: str) -> np.ndarray:
    raw = node.get(key)
    if raw is None:
        raise RuntimeError(f"node {node.name} has no {key!r}: an earlier phase did not run")
    return wire.decode(bytes(raw), _Arr).a  # type: ignore[arg-type]


def aligned_features(node: NodeRuntime) -> dict[str, np.ndarray]:
    """This party's preprocessed features (and labels for the bank) in common order, per split."""
    data = node.data()
    rows = get_array(node, "common_rows")
    test, val = get_array(node, "test_mask"), get_array(node, "val_mask")
    pre = LocalPreprocessor.from_dict(json.loads(str(node.get("preprocessor"))))
    X = pre.transform(data.features[rows])
    train = ~test & ~val
    out = {"X_train": X[train], "X_val": X[val], "X_test": X[test]}
    if data.labels is not None:
        y = data.labels[rows].astype(np.int8)
        out.update(y_train=y[train], y_val=y[val], y_test=y[test])
    return out


# -- split ------------------------------------------------------------------------------

def bank_test_mask(node: NodeRuntime, ids: list[str]) -> np.ndarray:
    """The bank's held-out rows: the documented stratified split for bundled data, else a keyed hash."""
    source = node.scenario.resolve(node.spec.data)
    seed = node.scenario.seed
    if source == "default_credit":
        from fedcredit.data.default_credit import train_test_ids, uscc_for_uci_id

        test_ids = {uscc_for_uci_id(int(i)) for i in train_test_ids(seed)[1]}
        return np.fromiter((u in test_ids for u in ids), dtype=bool, count=len(ids))
    from fedcredit.data.loaders import hash_split_mask

    return hash_split_mask(ids, seed)


class SplitPhase(Phase):
    def create(self, node: NodeRuntime, params: dict) -> Party:
        rows = get_array(node, "common_rows")
        if node.role == "bank":
            ids = [node.data().ids[i] for i in rows]
            section = node.scenario.section("evaluation")
            plan = make_plan(bank_test_mask(node, ids),
                             validation_fraction=float(section.get("validation_fraction", 0.1)),
                             seed=node.scenario.seed)
            self._store(node, plan)
            return SplitSender(node.name, params["peer"], plan)
        return SplitReceiver(node.name, params["peer"], n_rows=len(rows))

    @staticmethod
    def _store(node: NodeRuntime, plan: SplitPlan) -> None:
        put_array(node, "test_mask", plan.test)
        put_array(node, "val_mask", plan.validation)

    def dump(self, party: Party) -> bytes:
        plan = party.plan if isinstance(party, (SplitSender, SplitReceiver)) else None
        return json.dumps({"type": type(party).__name__, "name": party.name, "peer": party.peer,  # type: ignore[attr-defined]
                           "n_rows": getattr(party, "n_rows", 0),
                           "plan": wire.encode(plan).hex() if plan is not None else None}).encode()

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        s = json.loads(state)
        plan = wire.decode(bytes.fromhex(s["plan"]), SplitPlan) if s["plan"] else None
        if s["type"] == "SplitSender":
            p: Party = SplitSender(s["name"], s["peer"], plan)  # type: ignore[arg-type]
            p._done = True  # type: ignore[attr-defined]
            return p
        r = SplitReceiver(s["name"], s["peer"], s["n_rows"])
        r.plan = plan
        return r

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        if isinstance(party, SplitReceiver):
            assert party.plan is not None
            self._store(node, party.plan)
        test, val = get_array(node, "test_mask"), get_array(node, "val_mask")
        data = node.data()
        rows = get_array(node, "common_rows")
        train_rows = rows[~test & ~val]
        pre = LocalPreprocessor().fit(data.features[train_rows], data.feature_names)
        node.put("preprocessor", json.dumps(pre.to_dict()))
        return {"train": int((~test & ~val).sum()), "validation": int(val.sum()), "test": int(test.sum())}


# -- release ----------------------------------------------------------------------------

class _Done(Party):
    """Phases without messages (release) still go through the relay for a signed record."""

    def __init__(self, name: str):
        self.name = name

    def start(self) -> list:
        return []

    def receive(self, inbox: list) -> list:
        return []

    @property
    def finished(self) -> bool:
        return True


class ReleasePhase(Phase):
    """Each party writes ITS OWN model part (and preprocessing) to its own storage."""

    def create(self, node: NodeRuntime, params: dict) -> Party:
        return _Done(node.name)

    def dump(self, party: Party) -> bytes:
        return party.name.encode()

    def restore(self, node: NodeRuntime, state: bytes) -> Party:
        return _Done(state.decode())

    def finish(self, node: NodeRuntime, party: Party) -> dict:
        model = node.get("model")
        if model is None:
            raise RuntimeError(f"node {node.name} has no trained model to release")
        part = {"party": node.name, "role": node.role, "feature_names": node.data().feature_names,
                "preprocessor": json.loads(str(node.get("preprocessor"))), "model": json.loads(str(model))}
        body = json.dumps(part, indent=1, sort_keys=True).encode()
        path = node.dir / "model.json"
        path.write_bytes(body)
        return {"model_sha256": hashlib.sha256(body).hexdigest(), "model_path": str(path)}


PHASES: dict[str, Phase] = {"split": SplitPhase(), "release": ReleasePhase()}
