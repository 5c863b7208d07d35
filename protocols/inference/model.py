"""The two trained model parts joint inference scores with, read from released ``model.json`` entries.

Hetero-LR: the bank holds its weights (intercept last), the centre its own; the score is
``sigmoid(X_b w_b + b + X_c w_c)``. SecureBoost: the bank holds the trees (guest model), the
centre its split table (host model) and answers, per applicant, the left/right bit of each host
split the bank's trees use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from protocols.common import wire
from protocols.inference.messages import InferenceError
from protocols.secureboost.model import ModelError, SecureBoostGuestModel, SecureBoostHostModel

MODEL_TYPES = ("hetero_lr", "secureboost")
P = TypeVar("P", bound="_ModelPart")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def _weights(model: Mapping[str, Any], who: str) -> np.ndarray:
    try:
        w = np.asarray(model["weights"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        raise InferenceError(f"{who}: LR model part has no numeric 'weights'") from None
    if not np.all(np.isfinite(w)):
        raise InferenceError(f"{who}: LR model part has non-finite weights")
    return w


@dataclass
class _ModelPart:
    """What both parts have: the model type, the party's feature count and LR weights.

    Subclasses name their side (``_owner``, ``_side``), how many LR weights are not feature
    weights (``_intercepts``) and how their SecureBoost half is read (:meth:`_with_trees`).
    """

    model_type: str
    n_features: int
    weights: np.ndarray | None = None

    _owner: ClassVar[str] = ""
    _side: ClassVar[str] = ""
    _intercepts: ClassVar[int] = 0

    @classmethod
    def from_dict(cls: type[P], model: Mapping[str, Any], who: str | None = None) -> P:
        """From the ``model`` entry of a released ``model.json``; ``who`` names the party in errors."""
        who = who or cls._owner
        kind = model.get("type")
        if kind == "hetero_lr":
            w = _weights(model, who)
            if w.size < cls._intercepts:
                raise InferenceError(f"{who}: LR model part has no weights")
            return cls("hetero_lr", w.size - cls._intercepts, weights=w)
        if kind == "secureboost":
            try:
                return cls._with_trees(bytes.fromhex(str(model["model_hex"])))
            except (KeyError, ValueError, wire.WireError, ModelError) as exc:
                raise InferenceError(f"{who}: not a SecureBoost {cls._side} model part ({exc})") from None
        raise InferenceError(f"{who}: model type {kind!r} cannot score (expected one of {MODEL_TYPES})")

    @classmethod
    def _with_trees(cls: type[P], data: bytes) -> P:
        """This side's SecureBoost part from its serialised model."""
        raise NotImplementedError


@dataclass
class BankModelPart(_ModelPart):
    """The bank's trained part: LR weights (intercept last) or a SecureBoost guest model."""

    guest: SecureBoostGuestModel | None = None

    _owner: ClassVar[str] = "bank"
    _side: ClassVar[str] = "guest"
    _intercepts: ClassVar[int] = 1

    @classmethod
    def _with_trees(cls, data: bytes) -> BankModelPart:
        guest = SecureBoostGuestModel.from_bytes(data)
        return cls("secureboost", guest.n_features, guest=guest)

    def split_ids(self) -> np.ndarray:
        if self.guest is None:
            return np.zeros(0, dtype=np.uint64)
        return np.asarray(self.guest.host_split_ids, dtype=np.uint64)

    def probabilities(self, X: np.ndarray, u_centre: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Default probability of rows ``X`` given the centre's answer for the same rows.

        ``u_centre``: LR partial scores; ``left``: SecureBoost bits ``(rows, len(split_ids()))``.
        """
        if self.model_type == "hetero_lr":
            assert self.weights is not None
            return sigmoid(X @ self.weights[:-1] + self.weights[-1] + u_centre)
        assert self.guest is not None
        col = {int(s): j for j, s in enumerate(self.split_ids().tolist())}
        return sigmoid(self.guest.decision_function(X, lambda sid, rows: left[rows, col[sid]]))


@dataclass
class CentreModelPart(_ModelPart):
    """The centre's trained part: LR weights or a SecureBoost host split table."""

    host: SecureBoostHostModel | None = None

    _owner: ClassVar[str] = "credit centre"
    _side: ClassVar[str] = "host"

    @classmethod
    def _with_trees(cls, data: bytes) -> CentreModelPart:
        host = SecureBoostHostModel.from_bytes(data)
        return cls("secureboost", host.n_features, host=host)

    def answer(self, X: np.ndarray, split_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``u_c`` per row, bool bits ``(rows, len(split_ids))``) for the centre's rows ``X``."""
        if self.model_type == "hetero_lr":
            assert self.weights is not None
            return X @ self.weights, np.zeros((X.shape[0], 0), dtype=bool)
        assert self.host is not None
        n, k = X.shape[0], split_ids.size
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        ids = np.tile(split_ids, n)
        try:
            left = self.host.directions(X, rows, ids) if n and k else np.zeros(n * k, dtype=bool)
        except ModelError as exc:
            raise InferenceError(f"centre cannot answer the bank's trees: {exc}") from None
        return np.zeros(0), left.reshape(n, k)
