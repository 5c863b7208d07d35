"""Fixed-point scales and value bounds of hetero-LR: what every integer in a ciphertext is bounded by.

Both parties must encode identically (the scales are in the shared settings), and every bound
here feeds a check: a value outside it means divergence, a wrong key or a corrupted ciphertext,
and the masks are sized from these bounds plus ``STAT_SEC_BITS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.common.encoding import FixedPoint
from protocols.hetero_lr.config import HeteroLRConfig

STAT_SEC_BITS = 80  # statistical hiding of every masked value
# bits above the shared gradient bound the decrypting party returns: a deviation there is caught w.p. 1 - 2^-24
CHECK_BITS = 24
X_INT_BITS = 11  # |feature| < 2^11 after the caller's standardisation
LOGIT_LIMIT_BITS = 12  # |u_bank|, |u_centre| < 2^12, otherwise training has diverged
FRAC_BITS_S = 16  # fixed-point bits of class weights
S_INT_BITS = 8  # class weights < 2^8

SAMPLE_WEIGHTS = FixedPoint(FRAC_BITS_S, S_INT_BITS)  # per-row class weights s


@dataclass(frozen=True)
class Codecs:
    """The fixed-point formats of one training run (from its shared settings)."""

    features: FixedPoint  # X in the gradient
    bank_residual: FixedPoint  # 0.25 u_bank - 0.5 y: |.| < 2^11
    centre_residual: FixedPoint  # 0.25 u_centre: |.| < 2^10
    centre_scores: FixedPoint  # u_centre as exponents of the loss cross term

    @classmethod
    def for_config(cls, config: HeteroLRConfig) -> Codecs:
        return cls(
            features=FixedPoint(config.frac_bits_x, X_INT_BITS),
            bank_residual=FixedPoint(config.frac_bits_d, LOGIT_LIMIT_BITS - 2 + 1),
            centre_residual=FixedPoint(config.frac_bits_d, LOGIT_LIMIT_BITS - 2),
            centre_scores=FixedPoint(config.frac_bits_x, LOGIT_LIMIT_BITS),
        )


def gradient_scale_bits(config: HeteroLRConfig) -> int:
    """Fraction bits of a decrypted gradient or loss aggregate: features x residuals (x weights)."""
    return config.frac_bits_x + config.frac_bits_d + (FRAC_BITS_S if config.weighted else 0)


def gradient_value_bits(n_rows: int, feature_bits: int, config: HeteroLRConfig) -> int:
    """Bound on ``|X^T (s d)|`` (fixed-point integers) over ``n_rows`` rows: the mask is sized from it."""
    d_bits = config.frac_bits_d + LOGIT_LIMIT_BITS
    s_bits = FRAC_BITS_S + S_INT_BITS if config.weighted else 0
    return n_rows.bit_length() + feature_bits + d_bits + s_bits + 1


def shared_gradient_bits(n_rows: int, config: HeteroLRConfig) -> int:
    """Bound on ``|X^T (s d)|`` that the *shared settings* imply (features at their largest, ``|x| < 2^11``).

    Both parties can compute it without seeing the other's data, so it fixes the mask offset,
    the decrypted window and the owner's range check identically on both sides.
    """
    return gradient_value_bits(n_rows, config.frac_bits_x + X_INT_BITS, config)


def window_bits(n_rows: int, config: HeteroLRConfig) -> int:
    """Low bits of a decrypted masked gradient entry that the decrypting party returns.

    The owner needs ``shared_gradient_bits + 1`` bits to unmask exactly; ``CHECK_BITS`` more let
    it catch a deviation that lands just above the bound. Nothing above the window ever leaves
    the decrypting party, so a peer that evaluates some other function than the gradient under
    the mask learns at most ``window_bits`` bits of it per entry (see docs/protocols/threat-model.md).
    """
    return shared_gradient_bits(n_rows, config) + 1 + CHECK_BITS


def loss_window_bits(n_rows: int, config: HeteroLRConfig) -> int:
    """Low bits of a decrypted loss aggregate (over ``n_rows`` rows) the bank may read; the rest is masked.

    ``|T| < 2^(loss_window_bits - 1)`` for any honest run (the bank refuses a larger value); the
    centre masks everything above with uniform randomness, so a bank that chose oversized
    residuals reads at most this many bits of the centre's partial scores per aggregate.
    """
    return gradient_scale_bits(config) + 2 * LOGIT_LIMIT_BITS + n_rows.bit_length() + 8 + 1
