"""Scenario configuration: one TOML file describes a whole joint-modelling run.

* :mod:`fedcredit.config.scenario` -- :class:`Scenario` and :func:`load` / :func:`loads`: the file,
  its parties, and every section parsed and checked at load time.
* :mod:`fedcredit.config.sections` -- the framework's sections (``[run]``, ``[data]``, ``[psi]``,
  ``[consent]``, ``[inference]``, ``[evaluation]``, ``[simulation]``, ``[ledger]``, ``[deploy]``).
* :mod:`fedcredit.config.horizontal` -- the ``[horizontal]`` section and its nested tables.
* :mod:`fedcredit.config.registry` -- which class reads which section (``[lr]`` and
  ``[secureboost]`` are declared by their protocols).

Every section is a :class:`protocols.common.settings.Settings` dataclass, and every configuration
error in fedcredit is a :class:`ConfigError` (the same class as
``protocols.common.settings.ConfigError``, so protocol errors such as ``HeteroLRConfigError`` are
caught with it). ``fedcredit config show SCENARIO`` prints every setting with its effective value.
"""

from fedcredit.config.registry import SECTION_NAMES, parse_section, section_type
from fedcredit.config.scenario import ROLES, PartySpec, Scenario, load, loads
from fedcredit.config.sections import MODES, PURPOSES
from protocols.common.settings import ConfigError, Settings, describe

__all__ = [
    "MODES",
    "PURPOSES",
    "ROLES",
    "SECTION_NAMES",
    "ConfigError",
    "PartySpec",
    "Scenario",
    "Settings",
    "describe",
    "load",
    "loads",
    "parse_section",
    "section_type",
]
