"""The ``[lr]`` section: hetero-LR training settings, each declared once with its constraint.

One table of a scenario configures both parties. Parsing, type and range checks and the
documentation all come from the declarations below (:mod:`protocols.common.settings`); the
subset in :meth:`HeteroLRConfig.shared_settings` is also compared in the parties' hello, so two
nodes given different tables refuse to train and name the differing setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from protocols.common.settings import ConfigError, Settings, setting
from protocols.paillier import MIN_KEY_BITS

MIN_BATCH_ROWS = 32  # no aggregate (gradient, loss) over fewer rows ever leaves a party
TEST_KEY_MIN_BITS = 512  # the floor even with insecure_test_key: smaller keys cannot hold a mask


_SHARED_KEYS = ("seed", "batch_size", "epochs", "frac_bits_x", "frac_bits_d")  # with "weighted": the hello's check


class HeteroLRConfigError(ConfigError):
    """A hetero-LR setting is unknown, mistyped or out of range; the message names it."""


def _no_weighting_spelling(value: Any) -> Any:
    """``"none"`` and ``""`` (any case) mean no class weighting, as an absent key does."""
    if isinstance(value, str) and value.lower() in ("", "none"):
        return None
    return value


@dataclass
class HeteroLRConfig(Settings):
    """Training settings; both parties must agree on the :meth:`shared_settings` subset."""

    SECTION: ClassVar[str] = "lr"
    error_type: ClassVar[type[ConfigError]] = HeteroLRConfigError

    epochs: int = setting(10, "passes over the training rows (fewer with early stopping)", ge=1)
    batch_size: int = setting(
        4096, "rows per batch; a batch has between batch_size and 2 * batch_size - 1 rows", ge=MIN_BATCH_ROWS
    )
    learning_rate: float = setting(0.5, "step size of epoch 0", gt=0)
    lr_decay: float = setting(0.3, "lr(epoch) = learning_rate / (1 + lr_decay * epoch)", ge=0)
    momentum: float = setting(0.9, "heavy ball: v = momentum v + g; w -= lr v", ge=0, lt=1)
    l2: float = setting(1e-3, "L2 penalty on the weights (not on the intercept)", ge=0)
    early_stopping_patience: int = setting(3, "epochs without a validation improvement > tol; 0 disables", ge=0)
    early_stopping_tol: float = setting(1e-4, "the validation-loss decrease that counts as an improvement", ge=0)
    class_weight: str | None = setting(
        None,
        'absent (or "none") for equal weights, "balanced" for n / (2 n_class) per row',
        choices=(None, "balanced"),
        convert=_no_weighting_spelling,
    )
    frac_bits_x: int = setting(12, "fixed-point fraction bits of the features in the gradient", ge=4, le=20)
    frac_bits_d: int = setting(24, "fixed-point fraction bits of the residuals", ge=8, le=40)
    key_bits: int = setting(2048, "each party's Paillier modulus size", ge=TEST_KEY_MIN_BITS)
    insecure_test_key: bool = setting(False, "allow keys below 2048 bits (tests only)")
    seed: int = setting(42, "seed of the batch schedule (shared, checked at setup)", ge=0)
    validation_fraction: float = setting(
        0.1, "share of the training rows the caller holds out; the protocol receives them as val rows", ge=0, lt=1
    )
    restore_best_weights: bool = setting(True, "on finish, each party keeps its best-validation-epoch weights")

    def validate(self) -> None:
        if self.key_bits < MIN_KEY_BITS and not self.insecure_test_key:
            raise self.fail(
                "key_bits",
                f"must be >= {MIN_KEY_BITS} (smaller keys only with insecure_test_key = true, in tests)",
            )

    @property
    def weighted(self) -> bool:
        return self.class_weight is not None

    def shared_settings(self) -> dict[str, Any]:
        """What both parties must agree on for the schedule and the fixed-point scales to match."""
        return {key: getattr(self, key) for key in _SHARED_KEYS} | {"weighted": self.weighted}

    def learning_rate_at(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.lr_decay * epoch)
