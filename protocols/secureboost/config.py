"""SecureBoost settings and the input checks both parties share.

One ``[secureboost]`` table of a scenario configures both parties; :meth:`SecureBoostConfig.from_section`
rejects unknown keys so a typo cannot silently fall back to a default. The helpers below turn bad
input into errors that name the party, the array, the row and the column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.common import wire
from protocols.common.inputs import as_features  # noqa: F401  (re-exported for the SecureBoost parties)
from protocols.common.party import Envelope, ProtocolError
from protocols.gbdt.binning import BinEdges, BinningError, fit_bins
from protocols.gbdt.plain import GBDTParams
from protocols.paillier import MIN_KEY_BITS

STATE_VERSION = "secureboost-state/1"
PARALLEL_MIN_MULTS = 20_000  # below this many ciphertext additions a level runs serially
PARALLEL_MIN_SHIFTS = 64  # below this many candidates packing runs serially


class SecureBoostConfigError(ValueError):
    """A SecureBoost setting is unknown, mistyped or out of range; the message names it."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecureBoostConfig:
    """Training settings; guest and host must be given the same (they come from one scenario).

    ``precision_bits``: fraction bits of the fixed-point g/h (the plaintext reference quantises
    identically). ``n_workers``: processes for the encrypted hot loops (0 = all cores).
    ``share_host_gains``: at the end the guest tells the host the gain of each host split so
    the host can rank its features by gain (aggregate label information; off -> split counts
    only). ``scoring_mode``: default of the scoring protocol (``"cross"`` or ``"pairs"``).
    ``seed`` is kept for symmetry with hetero-LR; all protocol randomness (keys, shuffles,
    opaque ids) comes from :mod:`secrets`, never from a shared seed.
    """

    n_trees: int = 30
    max_depth: int = 3
    learning_rate: float = 0.3
    max_bins: int = 32
    reg_lambda: float = 1.0
    min_child_weight: float = 1.0
    min_samples_leaf: int = 1
    gamma: float = 0.0
    early_stopping_rounds: int = 0
    complete_secure: bool = False
    key_bits: int = 2048
    insecure_test_key: bool = False
    seed: int = 42
    precision_bits: int = 32
    n_workers: int = 0
    share_host_gains: bool = True
    scoring_mode: str = "cross"

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise SecureBoostConfigError(f"secureboost setting {key!r}={getattr(self, key)!r}: {what}")

        for key in (
            "n_trees",
            "max_depth",
            "max_bins",
            "min_samples_leaf",
            "early_stopping_rounds",
            "key_bits",
            "seed",
            "precision_bits",
            "n_workers",
        ):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool), key, "must be an integer")
        for key in ("learning_rate", "reg_lambda", "min_child_weight", "gamma"):
            v = getattr(self, key)
            need(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                key,
                "must be a finite number",
            )
            object.__setattr__(self, key, float(v))
        for key in ("complete_secure", "insecure_test_key", "share_host_gains"):
            need(isinstance(getattr(self, key), bool), key, "must be true or false")
        need(self.n_trees >= 1, "n_trees", "must be >= 1")
        need(1 <= self.max_depth <= 16, "max_depth", "must be in [1, 16]")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(2 <= self.max_bins <= 256, "max_bins", "must be in [2, 256]")
        need(self.reg_lambda >= 0, "reg_lambda", "must be >= 0")
        need(self.min_child_weight >= 0, "min_child_weight", "must be >= 0")
        need(self.min_samples_leaf >= 1, "min_samples_leaf", "must be >= 1")
        need(self.gamma >= 0, "gamma", "must be >= 0")
        need(self.early_stopping_rounds >= 0, "early_stopping_rounds", "must be >= 0 (0 = off)")
        need(16 <= self.precision_bits <= 40, "precision_bits", "must be in [16, 40]")
        need(self.n_workers >= 0, "n_workers", "must be >= 0 (0 = all cores)")
        need(self.scoring_mode in ("cross", "pairs"), "scoring_mode", 'must be "cross" or "pairs"')
        need(
            self.key_bits >= MIN_KEY_BITS or self.insecure_test_key,
            "key_bits",
            f"must be >= {MIN_KEY_BITS} (smaller keys only with insecure_test_key = true, in tests)",
        )
        need(self.key_bits >= 512, "key_bits", "must be >= 512 even for tests")

    @classmethod
    def from_section(cls, d: dict[str, Any] | None) -> SecureBoostConfig:
        """Build from a scenario's ``[secureboost]`` table; unknown keys are an error."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SecureBoostConfigError(f"unknown secureboost setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def gbdt_params(self) -> GBDTParams:
        """The tree hyper-parameters, for the plaintext reference :class:`~protocols.gbdt.plain.PlainGBDT`."""
        return GBDTParams(
            n_trees=self.n_trees,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            reg_lambda=self.reg_lambda,
            min_child_weight=self.min_child_weight,
            min_samples_leaf=self.min_samples_leaf,
            gamma=self.gamma,
            early_stopping_rounds=self.early_stopping_rounds,
            complete_secure=self.complete_secure,
            precision_bits=self.precision_bits,
        )


# ---------------------------------------------------------------------------------------------
# input hygiene
# ---------------------------------------------------------------------------------------------
def as_labels(y: np.ndarray | None, n: int, who: str, what: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y).ravel()
    if y.shape[0] != n:
        raise ValueError(f"{who}: {what} has {y.shape[0]} labels for {n} rows")
    vals = set(np.unique(y).tolist())
    if not vals <= {0, 1}:
        raise ValueError(f"{who}: {what} must be 0/1, found values {sorted(vals)[:5]}")
    return y.astype(np.float64)


def digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fit_party_bins(X: np.ndarray, max_bins: int, who: str) -> BinEdges:
    try:
        return fit_bins(X, max_bins, what=f"{who}: X_train")
    except BinningError as exc:
        raise ValueError(str(exc)) from None


def decode_envelope(env: Envelope, cls: type, where: str) -> Any:
    try:
        return wire.decode(env.payload, cls)
    except wire.WireError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
