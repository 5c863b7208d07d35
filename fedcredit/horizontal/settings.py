"""The ``[horizontal]`` settings of a scenario, checked against the scenario's parties.

The section itself (every key, default, constraint and description) is declared once in
:mod:`fedcredit.config.horizontal` and parsed when the scenario loads. What is added here needs the
parties too: a horizontal run needs >= 2 banks (>= 3 for SecAgg+), and a simulated fault must
name one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedcredit.config import ConfigError, Scenario
from fedcredit.config.horizontal import (
    AGGREGATIONS,
    DP_KINDS,
    EVALUATIONS,
    FAULT_KINDS,
    STANDARDIZE,
    TRANSFORMS,
    CkksSettings,
    DpSettings,
    Fault,
    HorizontalSettings,
    SecAggSettings,
)

__all__ = [
    "AGGREGATIONS",
    "DP_KINDS",
    "EVALUATIONS",
    "FAULT_KINDS",
    "STANDARDIZE",
    "TRANSFORMS",
    "CkksSettings",
    "DpSettings",
    "Fault",
    "HorizontalSettings",
    "SecAggSettings",
    "from_scenario",
    "parse",
]


def _check_fault_parties(settings: HorizontalSettings, bank_names: list[str]) -> None:
    for i, f in enumerate(settings.simulate_faults):
        if f.party not in bank_names:
            raise ConfigError(
                f"[horizontal.simulate_faults[{i}]] party {f.party!r} is not a bank of this scenario ({bank_names})"
            )


def parse(section: Mapping[str, Any], bank_names: list[str] | None = None) -> HorizontalSettings:
    """Parse a ``[horizontal]`` table (as returned by ``Scenario.section``); with ``bank_names``,
    also check that every simulated fault names one of those banks."""
    settings = HorizontalSettings.from_section(section)
    if bank_names is not None:
        _check_fault_parties(settings, bank_names)
    return settings


def from_scenario(scenario: Scenario) -> HorizontalSettings:
    """The horizontal settings of ``scenario`` (which must be a horizontal scenario with banks)."""
    if scenario.mode != "horizontal":
        raise ConfigError(f"scenario {scenario.name!r} has mode {scenario.mode!r}, not 'horizontal'")
    banks = [p.name for p in scenario.parties_with_role("bank")]
    if len(banks) < 2:
        raise ConfigError(f"scenario {scenario.name!r}: horizontal training needs >= 2 banks, found {len(banks)}")
    settings = scenario.settings(HorizontalSettings)
    _check_fault_parties(settings, banks)
    if settings.aggregation == "secagg+" and len(banks) < 3:
        raise ConfigError(
            "secagg+ needs >= 3 banks: with two, each bank can subtract its own update "
            "from the aggregate and learn the other's"
        )
    return settings
