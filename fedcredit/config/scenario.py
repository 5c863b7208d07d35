"""Scenario files: one TOML file describes a whole joint-modelling run.

A scenario names the run (``[run]``: name, mode, purpose, seed), its parties (``[parties.<name>]``:
role and data) and one section per protocol or framework concern. :func:`loads` parses and checks
every section present against its declaration (:mod:`fedcredit.config.registry`), so a typo
anywhere fails at load, naming the section and the key, instead of silently falling back to a
default in the middle of a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import tomllib

from fedcredit.config.registry import PARTIES, SECTION_NAMES, parse_section, section_type
from fedcredit.config.sections import RunSettings
from protocols.common.settings import ConfigError, Settings

ROLES = ("bank", "credit_centre")
S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class PartySpec:
    """One data node: its name (e.g. ``bank_a``), role and where its data comes from."""

    name: str
    role: str
    data: str = "default_credit"  # "default_credit", a CSV/Parquet path, or a synthetic dir
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario file: the run, its parties, the raw tables and their parsed sections."""

    name: str
    mode: str
    purpose: str
    seed: int
    parties: tuple[PartySpec, ...]
    sections: dict[str, dict[str, Any]]
    source_text: str
    path: Path | None = None
    # Parsed sections, filled by loads() and on first use of settings(); not part of equality.
    _parsed: dict[str, Settings] = field(default_factory=dict, init=False, compare=False, repr=False)

    def section(self, name: str) -> dict[str, Any]:
        """The raw table ``[name]`` of the TOML (empty if absent); prefer :meth:`settings`."""
        return dict(self.sections.get(name, {}))

    @overload
    def settings(self, section: type[S]) -> S: ...

    @overload
    def settings(self, section: str) -> Settings: ...

    def settings(self, section: type[Settings] | str) -> Settings:
        """Section ``[name]`` parsed and checked, with every default filled in (cached).

        ``scenario.settings(PsiSettings)`` is typed as the class; ``scenario.settings("psi")``
        gives the same object (shared: treat it as read-only). A section absent from the file is
        its defaults; a section's own ``seed`` defaults to the ``[run]`` seed.
        """
        name = section if isinstance(section, str) else section.SECTION
        cls = section_type(name)
        if not isinstance(section, str) and cls is not section:
            raise ConfigError(f"{section.__name__} is not a scenario section (section [{name}] is {cls.__name__})")
        if name not in self._parsed:
            self._parsed[name] = parse_section(name, self.sections.get(name), run_seed=self.seed)
        return self._parsed[name]

    @property
    def config_hash(self) -> str:
        """SHA-256 of the scenario text: what the ledger's run-start record commits to."""
        return hashlib.sha256(self.source_text.encode()).hexdigest()

    def parties_with_role(self, role: str) -> list[PartySpec]:
        return [p for p in self.parties if p.role == role]

    def party(self, name: str) -> PartySpec:
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError(f"scenario {self.name!r} has no party named {name!r}")

    def resolve(self, value: str) -> str:
        """Resolve a relative data path against the scenario file's directory's parent (repo root)."""
        if self.path is None or value.startswith(("default_credit", "synthetic:")) or Path(value).is_absolute():
            return value
        for base in (Path.cwd(), self.path.parent, self.path.parent.parent):
            if (base / value).exists():
                return str((base / value).resolve())
        return value


def _parties(raw: Any, where: str) -> tuple[PartySpec, ...]:
    if not raw:
        raise ConfigError(f"{where}: no [parties.<name>] tables")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: [parties] must hold one [parties.<name>] table per party")
    parties = []
    for name, spec in raw.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"[parties.{name}] must be a table")
        if "role" not in spec:
            raise ConfigError(f"[parties.{name}] needs 'role'")
        if spec["role"] not in ROLES:
            raise ConfigError(f"[parties.{name}] role {spec['role']!r} is not one of {ROLES}")
        opts = {k: v for k, v in spec.items() if k not in ("role", "data")}
        parties.append(PartySpec(name=name, role=spec["role"], data=spec.get("data", "default_credit"), options=opts))
    return tuple(parties)


def _parse(name: str, table: Any, where: str, run_seed: int) -> Settings:
    """One section, its errors prefixed with the file (keeping their type, e.g. HeteroLRConfigError)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [{name}] must be a table, not a value")
    try:
        return parse_section(name, table, run_seed=run_seed)
    except ConfigError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def loads(text: str, path: Path | None = None) -> Scenario:
    """Parse a scenario and check every section in it; :class:`ConfigError` names what is wrong."""
    where = str(path or "scenario")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    unknown = set(raw) - {*SECTION_NAMES, PARTIES}
    if unknown:
        allowed = sorted({*SECTION_NAMES, PARTIES})
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; allowed: {allowed}")
    run = _parse("run", raw.get("run", {}), where, 0)
    assert isinstance(run, RunSettings)
    parties = _parties(raw.get(PARTIES), where)
    parsed = {name: _parse(name, raw[name], where, run.seed) for name in SECTION_NAMES if name in raw and name != "run"}
    scenario = Scenario(
        name=run.name,
        mode=run.mode,
        purpose=run.purpose,
        seed=run.seed,
        parties=parties,
        sections={k: v for k, v in raw.items() if k != PARTIES},
        source_text=text,
        path=path,
    )
    scenario._parsed.update(parsed, run=run)
    return scenario


def load(path: str | Path) -> Scenario:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scenario file {p} does not exist")
    return loads(p.read_text(encoding="utf-8"), path=p.resolve())
