"""The ``[horizontal]`` section of a scenario, parsed and checked once.

Every knob of a horizontal run lives here with its default, so the coordinator and every bank
interpret the same TOML the same way. Unknown keys are rejected (a typo must not silently fall
back to a default), and every error names the offending key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fedcredit.config import ConfigError, Scenario

AGGREGATIONS = ("plain", "secagg+", "ckks")
DP_KINDS = ("none", "central", "local")
FAULT_KINDS = ("raise", "nan", "inf", "shape", "range")
EVALUATIONS = ("holdout", "none")
TRANSFORMS = ("none", "signed_log1p")
STANDARDIZE = ("none", "federated")


@dataclass(frozen=True)
class SecAggSettings:
    """SecAgg+ parameters; 0 means "choose from the number of banks / the model"."""

    num_shares: int = 0
    reconstruction_threshold: int = 0
    clipping_range: float = 0.0  # 0 = auto: power of two >= headroom * max|global weight|
    clipping_headroom: float = 4.0
    min_clipping_range: float = 4.0
    quantization_range: int = 0  # 0 = auto: largest power of two with K * Q < modulus / 2
    modulus_range: int = 2**32


@dataclass(frozen=True)
class CkksSettings:
    """TenSEAL CKKS parameters: one 60-bit data prime at N=8192 is ~8x float32 bytes."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 60)
    scale_bits: int = 40


@dataclass(frozen=True)
class DpSettings:
    """Differential privacy: ``central`` = client-side clipping + coordinator noise (Flower's
    DifferentialPrivacyClientSideFixedClipping), ``local`` = Flower's LocalDpMod on each bank."""

    kind: str = "none"
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0  # central
    epsilon: float = 1.0  # local, per round
    delta: float = 1e-5
    sensitivity: float = 0.0  # local; 0 = 2 * clipping_norm (two clipped updates differ by <= 2C)

    @property
    def local_sensitivity(self) -> float:
        return self.sensitivity if self.sensitivity > 0 else 2.0 * self.clipping_norm


@dataclass(frozen=True)
class Fault:
    """A simulated failure for researchers and tests: ``party`` misbehaves in ``round``."""

    party: str
    round: int
    kind: str


@dataclass(frozen=True)
class HorizontalSettings:
    aggregation: str = "plain"
    rounds: int = 5
    local_epochs: int = 1
    batch_size: int = 256
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    model: str = "lr"
    hidden: tuple[int, ...] = (32,)
    class_weight: str = "balanced"
    fedprox_mu: float = 0.0
    skew: float = 0.0
    max_rows_per_bank: int = 0
    transform: str = "none"
    standardize: str = "none"
    max_abs_weight: float = 64.0
    timeout: float = 120.0
    evaluation: str = "holdout"
    baseline: bool = True
    release_each_round: bool = False
    secagg: SecAggSettings = field(default_factory=SecAggSettings)
    ckks: CkksSettings = field(default_factory=CkksSettings)
    dp: DpSettings = field(default_factory=DpSettings)
    faults: tuple[Fault, ...] = ()

    def fault_for(self, party: str, rnd: int, task: str = "train") -> str:
        """The simulated fault ``party`` must produce in training round ``rnd`` ("" if none)."""
        if task != "train":
            return ""
        for f in self.faults:
            if f.party == party and f.round == rnd:
                return f.kind
        return ""


def _take(table: dict[str, Any], allowed: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"[{where}] unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    out = {}
    for key, default in allowed.items():
        if key not in table:
            continue
        value = table[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"[{where}] {key} must be true/false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"[{where}] {key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"[{where}] {key} must be a finite number, got {value!r}")
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"[{where}] {key} must be a string, got {value!r}")
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"[{where}] {key} must be a list of integers, got {value!r}")
            value = tuple(value)
        out[key] = value
    return out


def _choice(value: str, options: tuple[str, ...], key: str) -> None:
    if value not in options:
        raise ConfigError(f"[horizontal] {key} = {value!r} is not one of {options}")


def parse(section: dict[str, Any], bank_names: list[str] | None = None) -> HorizontalSettings:
    """Parse a ``[horizontal]`` table (as returned by ``Scenario.section``)."""
    section = dict(section)
    sub = {name: section.pop(name, {}) for name in ("secagg", "ckks", "dp")}
    faults_raw = section.pop("simulate_faults", [])
    base = HorizontalSettings()
    top_defaults = {
        k: getattr(base, k)
        for k in HorizontalSettings.__dataclass_fields__
        if k not in ("secagg", "ckks", "dp", "faults")
    }
    kwargs = _take(section, top_defaults, "horizontal")
    secagg = SecAggSettings(**_take(sub["secagg"], vars(SecAggSettings()), "horizontal.secagg"))
    ckks = CkksSettings(**_take(sub["ckks"], vars(CkksSettings()), "horizontal.ckks"))
    dp = DpSettings(**_take(sub["dp"], vars(DpSettings()), "horizontal.dp"))
    if not isinstance(faults_raw, list):
        raise ConfigError("[horizontal] simulate_faults must be an array of tables")
    faults = []
    for i, f in enumerate(faults_raw):
        where = f"horizontal.simulate_faults[{i}]"
        if not isinstance(f, dict) or set(f) != {"party", "round", "kind"}:
            raise ConfigError(f"[{where}] needs exactly party, round, kind")
        if f["kind"] not in FAULT_KINDS:
            raise ConfigError(f"[{where}] kind {f['kind']!r} is not one of {FAULT_KINDS}")
        if bank_names is not None and f["party"] not in bank_names:
            raise ConfigError(f"[{where}] party {f['party']!r} is not a bank of this scenario")
        faults.append(Fault(party=str(f["party"]), round=int(f["round"]), kind=str(f["kind"])))
    s = HorizontalSettings(**kwargs, secagg=secagg, ckks=ckks, dp=dp, faults=tuple(faults))
    _validate(s)
    return s


def _validate(s: HorizontalSettings) -> None:
    _choice(s.aggregation, AGGREGATIONS, "aggregation")
    _choice(s.dp.kind, DP_KINDS, "dp.kind")
    _choice(s.evaluation, EVALUATIONS, "evaluation")
    _choice(s.transform, TRANSFORMS, "transform")
    _choice(s.standardize, STANDARDIZE, "standardize")
    _choice(s.model, ("lr", "mlp"), "model")
    _choice(s.class_weight, ("none", "balanced"), "class_weight")
    _choice(s.optimizer, ("sgd", "adam"), "optimizer")
    for key in ("rounds", "local_epochs", "batch_size"):
        if getattr(s, key) < 1:
            raise ConfigError(f"[horizontal] {key} must be >= 1")
    for key in ("lr", "timeout", "max_abs_weight"):
        if not getattr(s, key) > 0:
            raise ConfigError(f"[horizontal] {key} must be > 0")
    if s.fedprox_mu < 0:
        raise ConfigError("[horizontal] fedprox_mu must be >= 0 (0 = FedAvg)")
    if not 0.0 <= s.skew <= 1.0:
        raise ConfigError("[horizontal] skew must be in [0, 1]")
    if s.max_rows_per_bank < 0:
        raise ConfigError("[horizontal] max_rows_per_bank must be >= 0 (0 = all rows)")
    if s.secagg.clipping_range < 0 or s.secagg.clipping_headroom < 1:
        raise ConfigError("[horizontal.secagg] clipping_range must be >= 0 and clipping_headroom >= 1")
    m = s.secagg.modulus_range
    if m <= 0 or m & (m - 1) or m > 2**32:
        raise ConfigError("[horizontal.secagg] modulus_range must be a power of two <= 2**32")
    if s.ckks.poly_modulus_degree not in (4096, 8192, 16384, 32768):
        raise ConfigError("[horizontal.ckks] poly_modulus_degree must be 4096, 8192, 16384 or 32768")
    if len(s.ckks.coeff_mod_bit_sizes) < 2:
        raise ConfigError("[horizontal.ckks] coeff_mod_bit_sizes needs a data prime and a special prime")
    if not 20 <= s.ckks.scale_bits < s.ckks.coeff_mod_bit_sizes[0] - 10:
        raise ConfigError(
            "[horizontal.ckks] scale_bits must leave >= 10 bits of headroom below the "
            "first prime (values would wrap around)"
        )
    if s.dp.kind != "none":
        if not s.dp.clipping_norm > 0 or not 0 < s.dp.delta < 1:
            raise ConfigError("[horizontal.dp] needs clipping_norm > 0 and 0 < delta < 1")
        if s.dp.kind == "central" and not s.dp.noise_multiplier > 0:
            raise ConfigError("[horizontal.dp] central DP needs noise_multiplier > 0")
        if s.dp.kind == "local" and not s.dp.epsilon > 0:
            raise ConfigError("[horizontal.dp] local DP needs epsilon > 0")
    if s.dp.kind == "central" and s.aggregation == "ckks":
        raise ConfigError(
            "[horizontal.dp] kind='central' adds noise to the plaintext aggregate at the "
            "coordinator, which never sees it under ckks; use kind='local' with ckks"
        )


def from_scenario(scenario: Scenario) -> HorizontalSettings:
    """The horizontal settings of ``scenario`` (which must be a horizontal scenario with banks)."""
    if scenario.mode != "horizontal":
        raise ConfigError(f"scenario {scenario.name!r} has mode {scenario.mode!r}, not 'horizontal'")
    banks = [p.name for p in scenario.parties_with_role("bank")]
    if len(banks) < 2:
        raise ConfigError(f"scenario {scenario.name!r}: horizontal training needs >= 2 banks, found {len(banks)}")
    s = parse(scenario.section("horizontal"), banks)
    if s.aggregation == "secagg+" and len(banks) < 3:
        raise ConfigError(
            "secagg+ needs >= 3 banks: with two, each bank can subtract its own update "
            "from the aggregate and learn the other's"
        )
    return s
