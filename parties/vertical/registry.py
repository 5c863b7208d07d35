"""Every vertical protocol phase a node can run, by the name the coordinator uses.

The coordinator asks a node to ``init``/``step``/``finish`` a phase by name
(:mod:`parties.vertical.server` for training, :mod:`parties.vertical.inference_server` for joint
inference); the node's adapter for that name is looked up here. A new protocol is one adapter
module plus one line below.
"""

from __future__ import annotations

from typing import Any

from parties.vertical.alignment_phases import AlignPhase, SplitPhase
from parties.vertical.consent import ConsentPhase
from parties.vertical.inference_phase import InferencePhase
from parties.vertical.phase import Phase
from parties.vertical.scorecard_phases import (
    BinningPhase,
    PointsPhase,
    ScorecardLRPhase,
    ScorecardReleasePhase,
    ScorecardScorePhase,
)
from parties.vertical.training_phases import HeteroLRPhase, ReleasePhase, ScorePhase, SecureBoostPhase

PHASES: dict[str, Phase[Any]] = {
    "align": AlignPhase(),
    "consent": ConsentPhase(),
    "split": SplitPhase(),
    "hetero_lr": HeteroLRPhase(),
    "secureboost": SecureBoostPhase(),
    "score": ScorePhase(),
    "release": ReleasePhase(),
    "inference": InferencePhase(),
    # mode = "scorecard" (parties.vertical.scorecard_phases)
    "binning": BinningPhase(),
    "scorecard_lr": ScorecardLRPhase(),
    "points": PointsPhase(),
    "scorecard_score": ScorecardScorePhase(),
    "scorecard_release": ScorecardReleasePhase(),
}


def phase_named(name: str) -> Phase[Any]:
    if name not in PHASES:
        raise ValueError(f"unknown protocol phase {name!r}")
    return PHASES[name]
