"""Which :class:`~protocols.common.settings.Settings` class reads which scenario section.

Every top-level table of a scenario except ``[parties.*]`` is a section listed here; an unknown
table is an error. The protocol sections are imported only when a scenario has them (or when
asked for), so loading a scenario for ``fedcredit --help``-fast commands stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fedcredit.config.horizontal import HorizontalSettings
from fedcredit.config.sections import (
    ConsentSettings,
    DataSettings,
    DeploySettings,
    EvaluationSettings,
    InferenceSettings,
    LedgerSettings,
    PsiSettings,
    RunSettings,
    SimulationSettings,
)
from protocols.common.settings import ConfigError, Settings

# Documentation order (``fedcredit config show``): what runs, on which data, then each protocol.
SECTION_NAMES = (
    "run",
    "data",
    "evaluation",
    "psi",
    "consent",
    "lr",
    "secureboost",
    "binning",
    "scorecard",
    "inference",
    "horizontal",
    "simulation",
    "ledger",
    "deploy",
)
PARTIES = "parties"  # the one top-level table that is not a section: one sub-table per party

_FRAMEWORK: dict[str, type[Settings]] = {
    "run": RunSettings,
    "data": DataSettings,
    "evaluation": EvaluationSettings,
    "psi": PsiSettings,
    "consent": ConsentSettings,
    "inference": InferenceSettings,
    "horizontal": HorizontalSettings,
    "simulation": SimulationSettings,
    "ledger": LedgerSettings,
    "deploy": DeploySettings,
}


def section_type(name: str) -> type[Settings]:
    """The class that parses section ``[name]``; :class:`ConfigError` for an unknown name."""
    if name in _FRAMEWORK:
        return _FRAMEWORK[name]
    if name == "lr":
        from protocols.hetero_lr import HeteroLRConfig

        return HeteroLRConfig
    if name == "secureboost":
        from protocols.secureboost import SecureBoostConfig

        return SecureBoostConfig
    if name == "binning":
        from protocols.binning.config import BinningConfig

        return BinningConfig
    if name == "scorecard":
        from protocols.scorecard.config import ScorecardConfig

        return ScorecardConfig
    raise ConfigError(f"unknown section [{name}]; allowed: {', '.join(SECTION_NAMES)}")


def parse_section(name: str, table: Mapping[str, Any] | None, *, run_seed: int) -> Settings:
    """Section ``[name]`` parsed and checked; a section's own ``seed`` defaults to ``run_seed``."""
    cls = section_type(name)
    values = dict(table or {})
    if name != "run" and "seed" in {f.name for f in dataclasses.fields(cls)}:
        values.setdefault("seed", run_seed)
    return cls.from_section(values)
