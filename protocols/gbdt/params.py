"""The hyper-parameters that decide a tree, declared once for the reference and the protocol.

:class:`GBDTParams` is a :class:`~protocols.common.settings.Settings` section: each field is
declared here with its default, description and constraint, and nowhere else. SecureBoost's
``[secureboost]`` section (:class:`protocols.secureboost.config.SecureBoostConfig`) inherits
these fields and adds only what the protocol needs (key, bins, workers), so the plaintext
reference and the federated parties cannot disagree about a default or a range.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.common.settings import Settings, setting


@dataclass
class GBDTParams(Settings):
    """Tree hyper-parameters (binary logistic loss, level-wise growth; see :mod:`protocols.gbdt.plain`)."""

    SECTION = "gbdt"

    n_trees: int = setting(30, "number of boosting rounds (trees)", ge=1)
    max_depth: int = setting(3, "levels per tree", ge=1, le=16)
    learning_rate: float = setting(0.3, "shrinkage applied to every leaf value", gt=0)
    reg_lambda: float = setting(1.0, "L2 regularisation of leaf values (lambda)", ge=0)
    min_child_weight: float = setting(1.0, "minimum hessian sum of a child", ge=0)
    min_samples_leaf: int = setting(1, "minimum training rows on each side of a split", ge=1)
    gamma: float = setting(0.0, "minimum gain of a split (subtracted from every gain)", ge=0)
    early_stopping_rounds: int = setting(
        0, "stop after this many trees without validation-loss improvement (0 = off)", ge=0
    )
    complete_secure: bool = setting(False, "grow the first tree on the guest's (label holder's) features only")
    precision_bits: int = setting(32, "fraction bits of the fixed-point gradients and hessians", ge=16, le=40)
