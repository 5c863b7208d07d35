"""What a vertical phase adapter is, and the node state that phases hand to each other.

A *phase* is one relayed protocol run: PSI, the split, a training protocol, scoring, the model
release, one batch of joint inference. Its adapter, on the node, turns the node's own data plus
what earlier phases left in ``context.state`` into the protocol's party object, persists the
party between steps and finishes it (stores results, reports aggregate numbers). The protocols
live in :mod:`protocols`; which phases exist is listed in :mod:`parties.vertical.registry`.

State a node keeps for later phases (node-local, never sent): ``common_rows`` (own row index of
each aligned position), ``test_mask`` / ``val_mask`` (over aligned positions), ``preprocessor``
(JSON), ``model`` (JSON of this party's model part).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from fedcredit.features import LocalPreprocessor
from parties.common.node import NodeRuntime
from protocols.common import wire
from protocols.common.party import Party, RestartableParty

P = TypeVar("P", bound=Party)
R = TypeVar("R", bound=RestartableParty)

COMMON_ROWS, TEST_MASK, VAL_MASK = "common_rows", "test_mask", "val_mask"
PREPROCESSOR, MODEL = "preprocessor", "model"


class Phase(ABC, Generic[P]):
    """Node-side adapter of one protocol: build, persist and finish its party from node data."""

    @abstractmethod
    def create(self, node: NodeRuntime, params: dict) -> P:
        """The party at ``init``; ``params`` come from the coordinator (e.g. the peer's name)."""

    @abstractmethod
    def restore(self, node: NodeRuntime, state: bytes) -> P:
        """The party again from :meth:`dump` bytes and the node's own data."""

    @abstractmethod
    def dump(self, party: P) -> bytes:
        """What the node keeps of the party between two steps."""

    def progress(self, node: NodeRuntime, party: P) -> dict:
        """Aggregate numbers to report after a step (never per-sample values)."""
        return {}

    @abstractmethod
    def finish(self, node: NodeRuntime, party: P) -> dict:
        """Persist this party's results for later phases; return its summary for the coordinator."""


class RestartablePhase(Phase[R]):
    """A phase whose party keeps its own state (:class:`protocols.common.party.RestartableParty`)."""

    def dump(self, party: R) -> bytes:
        return party.to_state()


# -- node state shared between phases -------------------------------------------------------


@dataclass
class _Arr:
    a: np.ndarray


def put_array(node: NodeRuntime, key: str, arr: np.ndarray) -> None:
    node.put(key, wire.encode(_Arr(np.ascontiguousarray(arr))))


def get_array(node: NodeRuntime, key: str) -> np.ndarray:
    raw = node.get_bytes(key)
    if raw is None:
        raise RuntimeError(f"node {node.name} has no {key!r}: an earlier phase did not run")
    return wire.decode(raw, _Arr).a


def get_json(node: NodeRuntime, key: str) -> dict:
    """A JSON document an earlier phase stored (the preprocessor, the model part)."""
    return json.loads(str(node.get(key)))


def aligned_splits(node: NodeRuntime, transform: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """``transform`` of this party's raw features in common order (and labels for the bank), per
    split: ``X_train``/``X_val``/``X_test`` (and ``y_*``), from the split phase's masks."""
    data = node.data()
    rows = get_array(node, COMMON_ROWS)
    test, val = get_array(node, TEST_MASK), get_array(node, VAL_MASK)
    X = transform(data.features[rows])
    train = ~test & ~val
    out = {"X_train": X[train], "X_val": X[val], "X_test": X[test]}
    if data.labels is not None:
        y = data.labels[rows].astype(np.int8)
        out.update(y_train=y[train], y_val=y[val], y_test=y[test])
    return out


def aligned_features(node: NodeRuntime) -> dict[str, np.ndarray]:
    """This party's preprocessed features (and labels for the bank) in common order, per split."""
    return aligned_splits(node, LocalPreprocessor.from_dict(get_json(node, PREPROCESSOR)).transform)
