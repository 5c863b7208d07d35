"""The ``[horizontal]`` section: every knob of a horizontal (FedAvg) run, declared once.

The coordinator and every bank read the same TOML through these classes, so they interpret it the
same way. Nested tables are sections of their own: ``[horizontal.secagg]``, ``[horizontal.ckks]``,
``[horizontal.dp]`` and the ``[[horizontal.simulate_faults]]`` array of tables. Checks that need
the scenario's parties (>= 2 banks, secagg+ with >= 3, faults naming banks) are in
:func:`fedcredit.horizontal.settings.from_scenario`.

The declarations live in the config package (not in :mod:`fedcredit.horizontal`) because loading a
scenario validates every section, and :mod:`fedcredit.horizontal` itself reads scenarios: declaring
them there would make the two packages import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from protocols.common.settings import Settings, setting

AGGREGATIONS = ("plain", "secagg+", "ckks")
DP_KINDS = ("none", "central", "local")
FAULT_KINDS = ("raise", "nan", "inf", "shape", "range")
EVALUATIONS = ("holdout", "none")
TRANSFORMS = ("none", "signed_log1p")
STANDARDIZE = ("none", "federated")


@dataclass
class SecAggSettings(Settings):
    """``[horizontal.secagg]``: Flower SecAgg+ parameters; 0 means "choose from the number of banks
    / the model" (see docs/protocols/horizontal.md)."""

    SECTION = "horizontal.secagg"

    num_shares: int = setting(0, "secret shares of each bank's mask key; 0 = from the number of banks", ge=0)
    reconstruction_threshold: int = setting(0, "shares needed to rebuild a dropped bank's mask; 0 = auto", ge=0)
    clipping_range: float = setting(
        0.0, "|weight| bound before quantisation; 0 = power of two >= headroom * max|global weight|", ge=0
    )
    clipping_headroom: float = setting(4.0, "factor over max|global weight| for the automatic clipping range", ge=1)
    min_clipping_range: float = setting(4.0, "smallest automatic clipping range", gt=0)
    quantization_range: int = setting(0, "quantisation levels; 0 = largest power of two with K * Q < modulus / 2", ge=0)
    modulus_range: int = setting(2**32, "modulus of the masked sums", le=2**32, power_of_two=True)


@dataclass
class CkksSettings(Settings):
    """``[horizontal.ckks]``: TenSEAL CKKS parameters; one 60-bit data prime at N=8192 is ~8x float32 bytes."""

    SECTION = "horizontal.ckks"

    poly_modulus_degree: int = setting(
        8192, "ring dimension N (N/2 slots per ciphertext)", choices=(4096, 8192, 16384, 32768)
    )
    coeff_mod_bit_sizes: tuple[int, ...] = setting(
        (60, 60), "bit sizes of the coefficient primes: data prime(s), then the special prime", ge=2, le=60
    )
    scale_bits: int = setting(40, "fixed-point scale 2**scale_bits of the encoded values", ge=20)

    def validate(self) -> None:
        if len(self.coeff_mod_bit_sizes) < 2:
            raise self.fail("coeff_mod_bit_sizes", "needs a data prime and a special prime")
        if not 20 <= self.scale_bits < self.coeff_mod_bit_sizes[0] - 10:
            raise self.fail(
                "scale_bits",
                "must be >= 20 and leave >= 10 bits of headroom below the first prime (values would wrap around)",
            )


@dataclass
class DpSettings(Settings):
    """``[horizontal.dp]``: differential privacy. ``central`` = client-side clipping + coordinator
    noise (Flower's DifferentialPrivacyClientSideFixedClipping), ``local`` = Flower's LocalDpMod on
    each bank."""

    SECTION = "horizontal.dp"

    kind: str = setting("none", "none, central (coordinator adds noise) or local (each bank does)", choices=DP_KINDS)
    clipping_norm: float = setting(1.0, "L2 bound of each bank's update")
    noise_multiplier: float = setting(1.0, "central: noise std / clipping_norm")
    epsilon: float = setting(1.0, "local: privacy budget per round")
    delta: float = setting(1e-5, "privacy failure probability")
    sensitivity: float = setting(
        0.0, "local: L2 sensitivity; 0 = 2 * clipping_norm (two clipped updates differ by <= 2C)"
    )

    def validate(self) -> None:
        if self.kind == "none":
            return
        if not self.clipping_norm > 0:
            raise self.fail("clipping_norm", f"must be > 0 with kind = {self.kind!r}")
        if not 0 < self.delta < 1:
            raise self.fail("delta", f"must be in (0, 1) with kind = {self.kind!r}")
        if self.kind == "central" and not self.noise_multiplier > 0:
            raise self.fail("noise_multiplier", "central DP needs noise_multiplier > 0")
        if self.kind == "local" and not self.epsilon > 0:
            raise self.fail("epsilon", "local DP needs epsilon > 0")

    @property
    def local_sensitivity(self) -> float:
        return self.sensitivity if self.sensitivity > 0 else 2.0 * self.clipping_norm


@dataclass
class Fault(Settings):
    """``[[horizontal.simulate_faults]]``: for researchers and tests, ``party`` misbehaves in ``round``."""

    SECTION = "horizontal.simulate_faults"
    REQUIRED: ClassVar[tuple[str, ...]] = ("party", "round", "kind")

    party: str = setting("", "the bank that misbehaves")
    round: int = setting(1, "training round of the fault", ge=1)
    kind: str = setting("raise", "what goes wrong", choices=FAULT_KINDS)

    @classmethod
    def from_section(cls, table: Mapping[str, Any] | None) -> Fault:
        """A fault names all three keys: a simulated failure is never implied by a default."""
        if set(table or {}) != set(cls.REQUIRED):
            raise cls.error_type(f"[{cls.SECTION}] needs exactly party, round, kind; got {dict(table or {})}")
        return super().from_section(table)


@dataclass
class HorizontalSettings(Settings):
    """``[horizontal]``: banks with one feature schema train one model with FedAvg / FedProx."""

    SECTION = "horizontal"

    aggregation: str = setting(
        "plain", "how updates are summed: plain, secagg+ (Flower SecAgg+) or ckks", choices=AGGREGATIONS
    )
    rounds: int = setting(5, "federated rounds", ge=1)
    local_epochs: int = setting(1, "epochs each bank trains per round", ge=1)
    batch_size: int = setting(256, "local mini-batch rows", ge=1)
    lr: float = setting(0.05, "local learning rate", gt=0)
    optimizer: str = setting("sgd", "local optimiser", choices=("sgd", "adam"))
    weight_decay: float = setting(0.0, "L2 weight decay of the local optimiser", ge=0)
    model: str = setting("lr", "logistic regression or a small MLP", choices=("lr", "mlp"))
    hidden: tuple[int, ...] = setting((32,), "MLP hidden layer sizes", ge=1)
    class_weight: str = setting(
        "balanced", "weight the positive class by the bank's class ratio", choices=("none", "balanced")
    )
    fedprox_mu: float = setting(0.0, "FedProx proximal term; 0 = FedAvg", ge=0)
    skew: float = setting(0.0, "default_credit only: non-IID strength of the split across banks", ge=0, le=1)
    max_rows_per_bank: int = setting(0, "cap on each bank's training rows; 0 = all rows", ge=0)
    transform: str = setting("none", "public feature transform before training", choices=TRANSFORMS)
    standardize: str = setting(
        "none", "federated = standardise with moments averaged across banks", choices=STANDARDIZE
    )
    max_abs_weight: float = setting(64.0, "updates with a larger |weight| are rejected", gt=0)
    timeout: float = setting(120.0, "seconds the coordinator waits for a round's replies", gt=0)
    evaluation: str = setting("holdout", "evaluate the global model on the common holdout, or not", choices=EVALUATIONS)
    baseline: bool = setting(True, "also train the pooled (centralised) reference model")
    release_each_round: bool = setting(False, "write the global model after every round, not only the last")
    allow_two_banks: bool = setting(
        False,
        "let a round run with only two banks (each then learns the other's update by subtraction); "
        "every bank refuses two-bank rounds unless its own scenario sets this (logged)",
    )
    secagg: SecAggSettings = setting(SecAggSettings, "SecAgg+ parameters ([horizontal.secagg])")
    ckks: CkksSettings = setting(CkksSettings, "CKKS parameters ([horizontal.ckks])")
    dp: DpSettings = setting(DpSettings, "differential privacy ([horizontal.dp])")
    simulate_faults: tuple[Fault, ...] = setting((), "simulated failures ([[horizontal.simulate_faults]])")

    def validate(self) -> None:
        if self.dp.kind == "central" and self.aggregation == "ckks":
            raise self.fail(
                "aggregation",
                "[horizontal.dp] kind='central' adds noise to the plaintext aggregate at the coordinator, "
                "which never sees it under ckks; use kind='local' with ckks",
            )

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The simulated faults (``simulate_faults`` in the TOML)."""
        return self.simulate_faults

    def fault_for(self, party: str, rnd: int, task: str = "train") -> str:
        """The simulated fault ``party`` must produce in training round ``rnd`` ("" if none)."""
        if task != "train":
            return ""
        for f in self.simulate_faults:
            if f.party == party and f.round == rnd:
                return f.kind
        return ""
