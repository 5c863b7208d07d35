"""Attack cases: each one plays a deviating coordinator or data holder against real parties.

A case is a function ``case(workdir: Path) -> AttackResult`` registered with :func:`attack`.
It runs the attack end to end (in-process grid, real protocol code), then reports, from what the
honest parties and the ledger actually did, whether the attack was refused or detected, by whom,
at which step, and whether any protected value reached the attacker. ``simulations/attacks.py``
runs every registered case; the tests call the same functions, so one definition serves both.

Modules: ``coordinator`` (an untrusted coordinator: forge, substitute keys, replay, alter, drop,
inject, CKKS oracle, SecAgg+ parameters) and ``holders`` (dishonest bank or centre deviating inside
the vertical protocols and inference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class AttackResult:
    """What one attack achieved, as observed from the honest parties' side."""

    name: str  # e.g. "coordinator/forge-sender/hetero-lr"
    attacker: str  # "coordinator", "bank" or "centre"
    refused_or_detected: bool  # an honest party refused the message or the verifier flagged it
    by: str  # which party (or "ledger verify") refused or detected it; "" if nobody
    step: str  # protocol step at which it was caught ("" if not caught)
    leaked: bool  # did a protected value reach the attacker? (checked against the true values)
    detail: str  # one human sentence: what was tried and what happened
    bound: str = ""  # for bounded channels: the documented bound and the measured figure
    within_bound: bool | None = None  # None unless the case is a bounded (not closed) channel

    def as_dict(self) -> dict:
        return asdict(self)


AttackCase = Callable[[Path], AttackResult]
REGISTRY: dict[str, AttackCase] = {}


def attack(name: str) -> Callable[[AttackCase], AttackCase]:
    """Register ``fn`` under ``name`` (unique) so the runner and the tests find it."""

    def register(fn: AttackCase) -> AttackCase:
        if name in REGISTRY:
            raise ValueError(f"attack case {name!r} registered twice")
        REGISTRY[name] = fn
        return fn

    return register


def load_all() -> dict[str, AttackCase]:
    """Import every case module (each registers its cases on import) and return the registry."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return dict(REGISTRY)
