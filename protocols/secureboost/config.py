"""SecureBoost settings: the ``[secureboost]`` section of a scenario.

One table configures both parties (guest and host must be given the same settings). The tree
hyper-parameters are inherited from :class:`protocols.gbdt.params.GBDTParams`, where they are
declared once for the plaintext reference and the protocol alike; this section adds only what
the protocol needs. Parsing, range checks and documentation all come from
:mod:`protocols.common.settings`: an unknown key or a bad value is a
:class:`SecureBoostConfigError` naming the key, e.g. ``[secureboost] max_depth = 0: must be >= 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from protocols.common.settings import ConfigError, setting
from protocols.gbdt.params import GBDTParams
from protocols.paillier import MIN_KEY_BITS


class SecureBoostConfigError(ConfigError):
    """A SecureBoost setting is unknown, mistyped or out of range; the message names it."""


@dataclass
class SecureBoostConfig(GBDTParams):
    """Training settings: the tree hyper-parameters of :class:`GBDTParams` plus the protocol's own.

    ``seed`` is kept for symmetry with hetero-LR; all protocol randomness (keys, shuffles,
    opaque ids) comes from :mod:`secrets`, never from a shared seed.
    """

    SECTION = "secureboost"
    error_type: ClassVar[type[ConfigError]] = SecureBoostConfigError

    max_bins: int = setting(32, "quantile bins per feature, fitted by each party on its own columns", ge=2, le=256)
    key_bits: int = setting(
        2048, f"Paillier key size of the guest (>= {MIN_KEY_BITS} unless insecure_test_key)", ge=512
    )
    insecure_test_key: bool = setting(False, "allow keys below the secure minimum (tests only)")
    seed: int = setting(42, "kept for symmetry with hetero-LR; protocol randomness always comes from the OS")
    n_workers: int = setting(0, "processes for the encrypted hot loops (0 = all cores)", ge=0)
    share_host_gains: bool = setting(
        True, "at the end, tell the host the gain of each of its splits (it can rank its features by gain)"
    )
    scoring_mode: str = setting(
        "cross", "default of the joint scoring protocol (see protocols.secureboost.scoring)", choices=("cross", "pairs")
    )

    def validate(self) -> None:
        if self.key_bits < MIN_KEY_BITS and not self.insecure_test_key:
            raise self.fail(
                "key_bits", f"must be >= {MIN_KEY_BITS} (smaller keys only with insecure_test_key = true, in tests)"
            )

    def gbdt_params(self) -> GBDTParams:
        """The tree hyper-parameters alone, for :class:`~protocols.gbdt.plain.PlainGBDT` and the split search."""
        return GBDTParams(**{f.name: getattr(self, f.name) for f in fields(GBDTParams)})
