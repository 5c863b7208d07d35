"""The scenario's ``[scorecard]`` section: the points scale and the exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocols.common.settings import ConfigError, Settings, setting
from protocols.scorecard.points import ScoreScale


class ScorecardConfigError(ConfigError):
    """A scorecard setting is unknown, mistyped or out of range; the message names it."""


@dataclass
class ScorecardConfig(Settings):
    """``base_score`` points at good:bad odds ``base_odds``:1; ``pdo`` points double the odds."""

    SECTION: ClassVar[str] = "scorecard"
    error_type: ClassVar[type[ConfigError]] = ScorecardConfigError

    base_score: float = setting(600.0, "score at the base odds", gt=0)
    base_odds: float = setting(50.0, "good:bad odds at the base score", gt=0)
    pdo: float = setting(20.0, "points to double the odds", gt=0)
    bands: int = setting(10, "equal-count score bands in the band report", ge=2, le=100)

    @property
    def scale(self) -> ScoreScale:
        return ScoreScale(base_score=self.base_score, base_odds=self.base_odds, pdo=self.pdo)
