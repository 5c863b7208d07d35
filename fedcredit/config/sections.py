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
import re
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
PSI_MODES = ("balanced", "unbalanced")
_PERIOD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # a key period: also part of a file name


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
    stream: bool = setting(
        True,
        "vertical training streams each epoch's (tree's) exchanges in one coordinator step; "
        "false: one relay step per exchange",
    )

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
    mode: str = setting(
        "balanced",
        "'balanced' (both sets blinded every run) or 'unbalanced' (the centre's table prepared once per "
        "key period and reused across runs and banks; docs/protocols/psi.md)",
        choices=PSI_MODES,
    )
    key_period: str | None = setting(
        None,
        "unbalanced: the centre's key period (e.g. '2026-11'); a new period re-prepares the table with a "
        "new key; absent = the current UTC month",
    )
    query_budget: int = setting(
        2_000_000, "unbalanced: ids one bank may have evaluated per key period (then rotate the period)", ge=1
    )
    store: str | None = setting(
        None,
        "unbalanced: directory holding each node's prepared table or cache across runs, one subdirectory "
        "per node (node_config psi-store overrides); absent = <node dir>/psi-store",
    )

    def validate(self) -> None:
        if self.key_period is not None and not _PERIOD.fullmatch(self.key_period):
            raise self.error_type(
                f"[psi] key_period {self.key_period!r}: use letters, digits, '-', '_' or '.' (at most 32)"
            )


CONSENT_MODES = ("enforce", "demo")


@dataclass
class ConsentSettings(Settings):
    """``[consent]``: the enterprises' signed consent tokens and what checks them (docs/consent.md).

    Fail-closed: unless ``mode = "demo"``, a run needs ``tokens`` (the bank's), ``issuer_keys``
    and ``revocations`` (the centre's trust anchors), or it refuses to start. Demo mode generates
    tokens with a public demo issuer key and is marked as such in the ledger.
    """

    SECTION = "consent"

    mode: str = setting(
        "enforce", "'enforce' (real tokens required) or 'demo' (generated demo tokens)", choices=CONSENT_MODES
    )
    tokens: str | None = setting(
        None, "bank: file of consent JWTs, one per line (node_config consent-tokens overrides)"
    )
    issuer_keys: tuple[str, ...] = setting(
        (), "centre: trusted issuers' public JWK files (node_config consent-issuers)"
    )
    revocations: tuple[str, ...] = setting(
        (), "centre: issuers' signed revocation lists (node_config consent-revocations)"
    )
    store: str | None = setting(
        None, "verified-token store, kept across runs; absent = runs/consent-store/store-<party>.bin"
    )
    column_categories: tuple[str, ...] = setting(
        (), "data category of centre columns not in the schema, 'column=category'"
    )
    registry: str | None = setting(None, "bank: optional consent registry CSV, an extra filter before PSI")
    at: str | None = setting(None, "day the consents must be valid on, YYYY-MM-DD; absent = today", convert=_iso_date)
    demo_dir: str = setting("runs/consent-demo", "demo mode: where generated demo tokens are cached")
    demo_revoked: float = setting(0.0, "demo mode: share of enterprises whose token is revoked", ge=0, le=1)
    demo_expired: float = setting(0.0, "demo mode: share whose token expired", ge=0, le=1)
    demo_wrong_purpose: float = setting(0.0, "demo mode: share whose token is for another purpose", ge=0, le=1)
    demo_out_of_scope: float = setting(0.0, "demo mode: share whose token lacks a needed category", ge=0, le=1)
    demo_forged: float = setting(0.0, "demo mode: share whose token is forged", ge=0, le=1)

    def validate(self) -> None:
        if self.at is not None:
            try:
                dt.date.fromisoformat(self.at)
            except ValueError:
                raise self.fail("at", "must be a date YYYY-MM-DD") from None
        keys = ("demo_revoked", "demo_expired", "demo_wrong_purpose", "demo_out_of_scope", "demo_forged")
        shares = {k: float(getattr(self, k)) for k in keys}
        total = sum(shares.values())
        if total > 1:
            last = [k for k, v in shares.items() if v > 0][-1]
            raise self.fail(last, f"the demo_* shares must add up to <= 1 (they add up to {total:g})")
        for entry in self.column_categories:
            if entry.count("=") != 1 or not all(p.strip() for p in entry.split("=")):
                raise self.fail("column_categories", f"{entry!r} is not 'column=category'")

    @property
    def day(self) -> dt.date:
        """The day consents are checked on."""
        return dt.date.fromisoformat(self.at) if self.at is not None else dt.date.today()

    @property
    def extra_categories(self) -> dict[str, str]:
        return {k.strip(): v.strip() for k, v in (e.split("=") for e in self.column_categories)}

    def missing_material(self) -> str | None:
        """Why a run may not start (fail closed), or None: outside demo mode tokens, issuer keys
        and revocation lists must be configured."""
        if self.mode == "demo":
            return None
        missing = [
            name
            for name, value in (
                ("tokens", self.tokens),
                ("issuer_keys", self.issuer_keys),
                ("revocations", self.revocations),
            )
            if not value
        ]
        if not missing:
            return None
        return (
            f'[consent] mode = "enforce" but no {", ".join(missing)} configured: the run would use the centre\'s data '
            "without verifiable authorisations. Configure the enterprises' consent tokens (bank), the issuers' keys "
            'and revocation lists (centre), or set [consent] mode = "demo" for bundled/synthetic data.'
        )


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
