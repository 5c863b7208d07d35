"""What the SecureBoost guest and host share: input checks, the persisted-state core, errors.

Both roles are :class:`~protocols.common.party.RestartableParty` objects: between any two steps
they are reduced to ``to_state()`` bytes and rebuilt by ``from_state`` with the node's own
data. The restore sequence (decode, check version, role and data digest, then rebuild derived
objects in ``_after_restore``) is the base class's; this module adds the part both SecureBoost
roles build the same way: the config and bin edges come from the state (refitting bins on
every restart would cost more than the step itself), the feature matrices are checked and
binned once in ``__init__``, and errors name the party, step, tree and level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from protocols.common.inputs import as_features
from protocols.common.party import Envelope, ProtocolError, RestartableParty, data_digest
from protocols.gbdt.binning import BinEdges, BinningError, fit_bins
from protocols.secureboost.config import SecureBoostConfig
from protocols.secureboost.kernels import resolve_workers

STATE_VERSION = "secureboost-state/1"


def required_features(X: np.ndarray | None, who: str, what: str, n_cols: int | None = None) -> np.ndarray:
    """:func:`~protocols.common.inputs.as_features` for an input that must be given."""
    checked = as_features(X, who, what, n_cols, allow_nan=True)  # NaN = missing: its own bin
    if checked is None:
        raise ValueError(f"{who}: {what} is required")
    return checked


def fit_party_bins(X: np.ndarray, max_bins: int, who: str, categorical: Sequence[int] = ()) -> BinEdges:
    """This party's quantile bins of its own training features (a ValueError names the party)."""
    try:
        return fit_bins(X, max_bins, what=f"{who}: X_train", categorical=categorical)
    except BinningError as exc:
        raise ValueError(str(exc)) from None


class _Peered(Protocol):
    """A two-party role: its peer's name, whether it is done, and its errors."""

    peer: str

    @property
    def finished(self) -> bool: ...

    def _fail(self, what: str) -> ProtocolError: ...


def check_sender(party: _Peered, env: Envelope, activity: str) -> None:
    """Refuse an envelope that arrives after ``activity`` finished or from anyone but the peer."""
    if party.finished:
        raise party._fail(f"received {env.kind} after {activity} finished")
    if env.sender != party.peer:
        raise party._fail(f"message from {env.sender!r}, expected only {party.peer!r}")


@dataclass
class SecureBoostState:
    """The fields every SecureBoost party persists (each role's state adds its own)."""

    version: str
    role: str
    name: str
    peer: str
    config: dict
    data_digest: str
    bin_edges: Any  # own quantile thresholds (flat) and per-feature counts: refitting
    bin_sizes: Any  # on every restart would cost more than the step itself
    phase: str
    step: int
    tree: int
    level: int
    stats: dict


class SecureBoostParty(RestartableParty):
    """Base of :class:`~protocols.secureboost.guest.SecureBoostGuest` and ``SecureBoostHost``.

    Subclasses set ``role``, ``state_type`` (a subclass of :class:`SecureBoostState`) and
    ``array_dtypes`` (state arrays restored with a fixed dtype), build ``self.s`` with
    :meth:`_state_fields`, and say in :attr:`_stage` what they are waiting for.
    """

    state_version = STATE_VERSION
    array_dtypes: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        *,
        name: str,
        peer: str,
        X_train: np.ndarray,
        X_val: np.ndarray | None,
        config: SecureBoostConfig,
        bins: BinEdges | None,
        categorical: Sequence[int] = (),
    ) -> None:
        if not isinstance(config, SecureBoostConfig):
            raise TypeError("config must be a SecureBoostConfig (use SecureBoostConfig.from_section)")
        if name == peer:
            raise ValueError(f"party name and peer name are both {name!r}")
        who = f"{self.role} {name!r}"
        self.name, self.peer, self.config = name, peer, config
        self.params = config.gbdt_params()
        self.X = required_features(X_train, who, "X_train")
        if self.X.shape[0] == 0:
            raise ValueError(f"{who}: X_train has no rows")
        self.X_val = as_features(X_val, who, "X_val", self.X.shape[1], allow_nan=True)
        # categorical: own columns split by level sets (issue 17); restored bins remember them
        self.bins = bins if bins is not None else fit_party_bins(self.X, config.max_bins, who, categorical)
        if self.bins.n_features != self.X.shape[1]:
            raise ValueError(f"{who}: bin edges for {self.bins.n_features} features, X_train has {self.X.shape[1]}")
        self.Xb = self.bins.transform(self.X)
        self.Xb_val = (
            self.bins.transform(self.X_val)
            if self.X_val is not None
            else np.zeros((0, self.X.shape[1]), dtype=np.uint8)
        )
        self.n_bins = self.bins.n_bins
        self.B = self.bins.max_n_bins

    def _state_fields(self, *data: np.ndarray | None, phase: str, tree: int) -> dict[str, Any]:
        """The :class:`SecureBoostState` fields of a fresh party whose inputs are ``data``."""
        edges, sizes = self.bins.to_arrays()
        return {
            "version": STATE_VERSION,
            "role": self.role,
            "name": self.name,
            "peer": self.peer,
            "config": self.config.to_dict(),
            "data_digest": data_digest(*data),
            "bin_edges": edges,
            "bin_sizes": sizes,
            "phase": phase,
            "step": 0,
            "tree": tree,
            "level": 0,
            "stats": {},
        }

    @classmethod
    def _built_from(cls, state: bytes) -> tuple[Any, SecureBoostConfig, BinEdges]:
        """(state, config, bin edges): what ``from_state`` constructs the party with."""
        s = cls.peek_state(state)
        bins = BinEdges.from_arrays(np.asarray(s.bin_edges), np.asarray(s.bin_sizes))
        return s, SecureBoostConfig(**s.config), bins

    def _after_restore(self) -> None:
        for key, dtype in self.array_dtypes.items():
            setattr(self.s, key, np.asarray(getattr(self.s, key), dtype=dtype))

    # -- shared surface -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return bool(self.s.phase == "done")

    @property
    def _stage(self) -> str:
        """What the party is doing or waiting for (part of every error message)."""
        return f"phase {self.s.phase}"

    def _fail(self, what: str) -> ProtocolError:
        s = self.s
        return self.error_type(
            f"{self.role} {self.name!r} at step {s.step} (tree {s.tree}, level {s.level}, {self._stage}): {what}"
        )

    @property
    def _workers(self) -> int:
        return resolve_workers(self.config.n_workers)

    def _begin_step(self) -> float:
        """Count the step; the start time of its work."""
        self.s.step += 1
        return time.perf_counter()
