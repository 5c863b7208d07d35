"""What a bank's node knows across horizontal messages: its scenario, its party and its keys.

Flower may run consecutive messages of one node in different processes, so everything a bank
keeps lives in its node-local ``context.state`` (record ``STATE``): the X25519 key of the CKKS
key hand-over and the CKKS secret key (cached per process, as loading it takes time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context

from fedcredit.config import ConfigError, Scenario
from fedcredit.horizontal import ckks as hckks
from parties.common.roles import resolve_party

STATE = "fedcredit.horizontal"  # this package's ConfigRecord in context.state

ScenarioProvider = Callable[[Context, str], Scenario]  # (node context, wanted config hash) -> scenario
Tap = Callable[[dict[str, Any]], None]  # sees each plaintext update just before it is protected
_CKKS_CACHE: dict[str, hckks.SecretCkks] = {}


class ProtocolRefused(RuntimeError):
    """The bank refuses a request that would break its scenario's privacy settings."""


@dataclass(frozen=True)
class BankEnv:
    """What one registration of the bank handlers needs: the scenario, where logs go, a tap."""

    scenario_of: ScenarioProvider
    out_dir: Path | None = None
    tap: Tap | None = None

    def scenario(self, context: Context, wanted: str) -> Scenario:
        """The bank's scenario; it must be the one the coordinator runs (same config hash)."""
        sc = self.scenario_of(context, wanted)
        if wanted and sc.config_hash != wanted:
            raise ConfigError(
                f"the coordinator runs scenario {wanted[:12]}… but this node's scenario "
                f"{sc.name!r} has hash {sc.config_hash[:12]}…; both must use the same file"
            )
        return sc


def state(context: Context) -> ConfigRecord:
    records = context.state.config_records
    if STATE not in records:
        records[STATE] = ConfigRecord()
    return records[STATE]


def state_bytes(context: Context, key: str) -> bytes:
    value = state(context)[key]
    if not isinstance(value, bytes):
        raise TypeError(f"node state {key!r} holds {type(value).__name__}, not bytes")
    return value


def party_of(context: Context, scenario: Scenario) -> tuple[str, str]:
    """(party, role) of this node in ``scenario``."""
    spec = resolve_party(context, scenario)
    return spec.name, spec.role


def bank_name(context: Context, scenario: Scenario) -> str:
    """This node's party, which must be a bank."""
    name, role = party_of(context, scenario)
    if role != "bank":
        raise ProtocolRefused(f"{name} has role {role!r}; horizontal training is for banks only")
    return name


def keep_secret(context: Context, secret: hckks.SecretCkks) -> None:
    """Hold ``secret`` as this bank's CKKS key."""
    st = state(context)
    st["ckks_secret"], st["ckks_key_fp"] = secret.secret_bytes, secret.key_fp
    _CKKS_CACHE[secret.key_fp] = secret


def secret(context: Context, party: str, key_fp: str | None = None) -> hckks.SecretCkks:
    """This bank's CKKS key; with ``key_fp``, refused unless it is that key."""
    st = state(context)
    if "ckks_secret" not in st:
        raise ProtocolRefused(f"{party}: holds no CKKS key (key set-up did not complete on this node)")
    fp = str(st["ckks_key_fp"])
    if key_fp is not None and fp != key_fp:
        raise hckks.CkksContextMismatch(
            f"{party}: the aggregate was produced under CKKS key {key_fp[:12]}…, this bank holds key {fp[:12]}…"
        )
    if fp not in _CKKS_CACHE:
        _CKKS_CACHE[fp] = hckks.SecretCkks.load(state_bytes(context, "ckks_secret"), expect_key_fp=fp)
    return _CKKS_CACHE[fp]
