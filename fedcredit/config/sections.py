"""The framework's own scenario sections: ``[run]``, ``[data]``, ``[evaluation]``, ``[psi]``,
``[consent]``, ``[inference]``, ``[simulation]``, ``[ledger]`` and ``[deploy]``.

Each is a :class:`~protocols.common.settings.Settings` dataclass: every key is declared once, with
its default, description and constraint, so parsing, checking and ``fedcredit config show`` come
from the same line. The protocol sections live with their protocols (``[lr]`` in
:mod:`protocols.hetero_lr`, ``[secureboost]`` in :mod:`protocols.secureboost`) and ``[horizontal]``
in :mod:`fedcredit.config.horizontal`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from protocols.common.settings import Settings, setting

MODES = ("vertical-lr", "secureboost", "horizontal", "inference", "scorecard")
# The purposes a consent may cover (fedcredit.consent.PURPOSES; tests/test_config.py checks they
# agree). Spelled out here so that loading a scenario, which every CLI command does, does not
# import numpy through the consent registry.
PURPOSES = ("credit_risk_modelling", "loan_decision")
# protocols.psi's MIN_TRUNCATE, POINT_BYTES and DEFAULT_TRUNCATE, spelled out for the same reason
# (the PSI engine imports the X25519 backend); tests/test_config.py checks they agree.
PSI_MIN_TRUNCATE, PSI_POINT_BYTES, PSI_DEFAULT_TRUNCATE = 8, 32, 12


def _iso_date(value: Any) -> Any:
    """TOML dates (``at = 2025-06-30``) and strings (``at = "2025-06-30"``) are both accepted."""
    return value.isoformat() if isinstance(value, dt.date) else value


@dataclass
class RunSettings(Settings):
    """``[run]``: what the run is, for whom, and how long a step may take."""

    SECTION = "run"
    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "mode")

    name: str = setting("", "the run's name (ledger, status.json, output tables); required")
    mode: str = setting("", "which joint-modelling protocol runs; required", choices=MODES)
    purpose: str = setting(
        "credit_risk_modelling", "the purpose the ledger records and consent must cover", choices=PURPOSES
    )
    seed: int = setting(42, "seed of splits and schedules; sections' own `seed` defaults to it", ge=0)
    step_timeout: float = setting(900.0, "seconds the coordinator waits for one protocol step", gt=0)

    @classmethod
    def from_section(cls, table: Mapping[str, Any] | None) -> RunSettings:
        """As :meth:`Settings.from_section`, but ``name`` and ``mode`` must be given."""
        for key in cls.REQUIRED:
            if key not in (table or {}):
                raise cls.error_type(f"[run] needs '{key}'")
        return super().from_section(table)

    def validate(self) -> None:
        if not self.name.strip():
            raise self.fail("name", "must not be empty")


@dataclass
class DataSettings(Settings):
    """``[data]``: synthetic SME tables that ``fedcredit simulate`` generates when missing."""

    SECTION = "data"

    synthetic: str | None = setting(None, "directory of generated tables (made if missing); absent = none")
    firms: int = setting(20_000, "firms in the synthetic universe", ge=1, le=10**8)
    banks: int = setting(1, "banks (bank_a, bank_b, ...) to generate", ge=1, le=26)
    seed: int = setting(42, "generator seed (default: the [run] seed)", ge=0)


@dataclass
class EvaluationSettings(Settings):
    """``[evaluation]``: how the bank holds training rows back for early stopping."""

    SECTION = "evaluation"

    validation_fraction: float = setting(0.1, "share of the training rows kept for validation", ge=0, lt=1)


@dataclass
class PsiSettings(Settings):
    """``[psi]``: the ECDH private set intersection on USCC ids."""

    SECTION = "psi"

    truncate: int = setting(
        PSI_DEFAULT_TRUNCATE,
        "bytes kept of each double-blinded key (collision bound: docs/protocols/psi.md)",
        ge=PSI_MIN_TRUNCATE,
        le=PSI_POINT_BYTES,
    )
    workers: int = setting(1, "processes for the curve operations; 0 = all cores", ge=0)


@dataclass
class ConsentSettings(Settings):
    """``[consent]``: the bank's consent registry, or the demo's grant-all with seeded refusals."""

    SECTION = "consent"

    registry: str | None = setting(None, "consent registry CSV; absent = grant all (bundled/synthetic data)")
    at: str | None = setting(None, "day the consents must be valid on, YYYY-MM-DD; absent = today", convert=_iso_date)
    demo_revoked: float = setting(0.0, "without a registry: share of enterprises that revoked", ge=0, le=1)
    demo_expired: float = setting(0.0, "without a registry: share whose consent expired", ge=0, le=1)

    def validate(self) -> None:
        if self.at is not None:
            try:
                dt.date.fromisoformat(self.at)
            except ValueError:
                raise self.fail("at", "must be a date YYYY-MM-DD") from None
        if self.demo_revoked + self.demo_expired > 1:
            raise self.fail("demo_expired", f"demo_revoked + demo_expired must be <= 1 (revoked {self.demo_revoked})")

    @property
    def day(self) -> dt.date:
        """The day consents are checked on."""
        return dt.date.fromisoformat(self.at) if self.at is not None else dt.date.today()


@dataclass
class InferenceSettings(Settings):
    """``[inference]``: joint scoring of new applicants with a released model."""

    SECTION = "inference"

    model_dir: str | None = setting(None, "the training run's directory (nodes/<party>/model.json, ledger.sqlite)")
    applicants: str | None = setting(None, "the bank's applicant table; absent = its own data table")
    batch_size: int = setting(50_000, "applicants per sealed request (one exchange each)", ge=1)
    training_ledger: str | None = setting(None, "the training run's ledger; absent = model_dir/ledger.sqlite")


@dataclass
class SimulationSettings(Settings):
    """``[simulation]``: resources of Flower's simulation engine (Ray)."""

    SECTION = "simulation"

    client_cpus: float = setting(1.0, "CPUs Ray reserves for each simulated party", gt=0)
    ray_cpus: int = setting(0, "CPUs Ray may use in all; 0 = all cores", ge=0)


@dataclass
class LedgerSettings(Settings):
    """``[ledger]``: reserved. The ledger has no scenario settings yet (keys come from the CLI and
    the run config), so any key here is a mistake and is rejected."""

    SECTION = "ledger"


@dataclass
class DeploySettings(Settings):
    """``[deploy]``: reserved. Deployment is configured on the command line (``fedcredit deploy``),
    so any key here is a mistake and is rejected."""

    SECTION = "deploy"
