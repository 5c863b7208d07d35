"""Scenario configuration: one TOML file describes a whole joint-modelling run.

A scenario names the mode (``vertical-lr``, ``secureboost``, ``horizontal``), the parties and
their data, and one section per protocol. Each protocol module interprets its own section (with
its own defaults) so adding a protocol never touches this file. Unknown top-level keys are
rejected so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

MODES = ("vertical-lr", "secureboost", "horizontal", "inference")
ROLES = ("bank", "credit_centre")
_TOP_LEVEL = {
    "run",
    "data",
    "parties",
    "psi",
    "lr",
    "secureboost",
    "horizontal",
    "simulation",
    "ledger",
    "consent",
    "deploy",
    "evaluation",
    "inference",
}


class ConfigError(ValueError):
    """A scenario file is missing, malformed or inconsistent; the message names the key."""


@dataclass(frozen=True)
class PartySpec:
    """One data node: its name (e.g. ``bank_a``), role and where its data comes from."""

    name: str
    role: str
    data: str = "default_credit"  # "default_credit", a CSV/Parquet path, or a synthetic dir
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str
    purpose: str
    seed: int
    parties: tuple[PartySpec, ...]
    sections: dict[str, dict[str, Any]]
    source_text: str
    path: Path | None = None

    def section(self, name: str) -> dict[str, Any]:
        """The table ``[name]`` of the TOML (empty if absent)."""
        return dict(self.sections.get(name, {}))

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


def loads(text: str, path: Path | None = None) -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path or 'scenario'}: not valid TOML: {exc}") from None
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        raise ConfigError(f"{path or 'scenario'}: unknown section(s) {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL)}")
    run = raw.get("run", {})
    for key in ("name", "mode"):
        if key not in run:
            raise ConfigError(f"{path or 'scenario'}: [run] needs '{key}'")
    if run["mode"] not in MODES:
        raise ConfigError(f"[run] mode {run['mode']!r} is not one of {MODES}")
    parties_raw = raw.get("parties", {})
    if not parties_raw:
        raise ConfigError(f"{path or 'scenario'}: no [parties.<name>] tables")
    parties = []
    for name, spec in parties_raw.items():
        if "role" not in spec:
            raise ConfigError(f"[parties.{name}] needs 'role'")
        if spec["role"] not in ROLES:
            raise ConfigError(f"[parties.{name}] role {spec['role']!r} is not one of {ROLES}")
        opts = {k: v for k, v in spec.items() if k not in ("role", "data")}
        parties.append(PartySpec(name=name, role=spec["role"], data=spec.get("data", "default_credit"), options=opts))
    sections = {k: v for k, v in raw.items() if k != "parties"}
    return Scenario(
        name=str(run["name"]),
        mode=str(run["mode"]),
        purpose=str(run.get("purpose", "credit_risk_modelling")),
        seed=int(run.get("seed", 42)),
        parties=tuple(parties),
        sections=sections,
        source_text=text,
        path=path,
    )


def load(path: str | Path) -> Scenario:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scenario file {p} does not exist")
    return loads(p.read_text(encoding="utf-8"), path=p.resolve())
