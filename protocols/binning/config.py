"""Settings of federated binning, shared by both roles (each enforces its own part)."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.binning.woe import MergeSettings


@dataclass(frozen=True)
class BinningConfig:
    """What the scenario's ``[binning]`` section sets.

    The centre enforces ``min_bin_rows`` on what it releases (it protects the centre's data, so
    it is the centre's own floor); the bank chooses merging and selection (it holds the labels).
    """

    n_fine_bins: int = 20
    min_bin_rows: int = 50  # smallest fine bin the centre releases a count for
    min_bin_share: float = 0.05
    max_bins: int = 8
    monotonic: str = "auto"
    min_iv: float = 0.02
    max_iv: float = 3.0  # above this a centre column predicts defaults too well: label-derived
    max_corr: float = 0.7
    key_bits: int = 2048
    insecure_test_key: bool = False

    def __post_init__(self) -> None:
        if self.n_fine_bins < 2:
            raise ValueError(f"n_fine_bins must be at least 2, got {self.n_fine_bins}")
        if self.min_bin_rows < 1:
            raise ValueError(f"min_bin_rows must be at least 1, got {self.min_bin_rows}")
        if not 0 < self.max_corr <= 1:
            raise ValueError(f"max_corr must be in (0, 1], got {self.max_corr}")
        self.merge_settings()  # validates the merge part

    def merge_settings(self) -> MergeSettings:
        return MergeSettings(min_bin_share=self.min_bin_share, max_bins=self.max_bins, monotonic=self.monotonic)
