"""Settings of federated binning (the scenario's ``[binning]`` section), shared by both roles.

The centre enforces ``min_bin_rows`` on what it releases (it protects the centre's data, so it is
the centre's own floor); the bank chooses merging and selection (it holds the labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocols.binning.woe import MONOTONIC, MergeSettings
from protocols.common.settings import ConfigError, Settings, setting
from protocols.paillier import MIN_KEY_BITS


class BinningConfigError(ConfigError):
    """A binning setting is unknown, mistyped or out of range; the message names it."""


@dataclass
class BinningConfig(Settings):
    """Fine binning, merging, selection and key size of federated WOE/IV binning."""

    SECTION: ClassVar[str] = "binning"
    error_type: ClassVar[type[ConfigError]] = BinningConfigError

    n_fine_bins: int = setting(20, "quantile bins per numeric column before merging", ge=2, le=200)
    min_bin_rows: int = setting(50, "smallest fine bin the centre releases a count for (its privacy floor)", ge=1)
    min_bin_share: float = setting(0.05, "smallest final value bin, as a share of the rows", ge=0, lt=0.5)
    max_bins: int = setting(8, "most final value bins per column", ge=2)
    monotonic: str = setting("auto", "event-rate trend of numeric columns' final bins", choices=MONOTONIC)
    min_iv: float = setting(0.02, "columns with a lower information value are dropped", ge=0)
    max_iv: float = setting(3.0, "a centre column above this (fine bins) is refused as label-derived", gt=0)
    max_corr: float = setting(
        0.7, "drop a party's column whose |r| with a better one it keeps exceeds this", gt=0, le=1
    )
    key_bits: int = setting(2048, "the bank's Paillier modulus size", ge=512)
    insecure_test_key: bool = setting(False, "allow keys below 2048 bits (tests only)")

    def validate(self) -> None:
        if self.key_bits < MIN_KEY_BITS and not self.insecure_test_key:
            raise self.fail("key_bits", f"must be >= {MIN_KEY_BITS} (smaller keys only with insecure_test_key = true)")

    def merge_settings(self) -> MergeSettings:
        return MergeSettings(min_bin_share=self.min_bin_share, max_bins=self.max_bins, monotonic=self.monotonic)
