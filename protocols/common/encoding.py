"""Fixed-point encoding of signed floats as integers, with explicit scale and overflow checks.

Paillier (and the masking protocols) work on integers. A float ``x`` is carried as the
integer ``round(x * 2**frac_bits)``; products of two encodings carry ``2 * frac_bits``
fractional bits, which :meth:`FixedPoint.decode` removes with ``extra_frac_bits``.

Why power-of-two scales: ``x * 2**k`` is exact in float64 (only the exponent changes), so the
only rounding is the final ``round`` and encode/decode round-trips are exact up to
``2**-(frac_bits + 1)``. Why hard errors instead of wrapping: an encoded value that silently
wraps modulo ``n`` decrypts as a plausible but wrong number, which would corrupt a model
without any symptom. ``int_bits`` is therefore a declared contract: ``|x| <= max_abs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EncodingError", "FixedPoint"]

_INT64_SAFE_BITS = 62  # magnitudes below 2**62 keep sums of a few int64 encodings from overflowing


class EncodingError(ValueError):
    """A value cannot be represented (NaN/Inf, too large) or a packed slot overflowed."""


def _where(shape: tuple[int, ...], flat_index: int) -> str:
    """Human-readable index (``5`` for vectors, ``(2, 3)`` for matrices)."""
    if len(shape) <= 1:
        return str(flat_index)
    return str(tuple(int(i) for i in np.unravel_index(flat_index, shape)))


@dataclass(frozen=True)
class FixedPoint:
    """Signed fixed-point format: ``frac_bits`` fractional bits, ``int_bits`` integer bits.

    An encoded value ``v`` satisfies ``|v| <= 2**(int_bits + frac_bits) - 1``, i.e. it needs
    ``bits + 1`` bits including the sign (``bits = int_bits + frac_bits``). Encodings come back
    as ``int64`` arrays when ``bits <= 62`` and as ``object`` arrays of Python ints otherwise.
    """

    frac_bits: int
    int_bits: int

    def __post_init__(self) -> None:
        if self.frac_bits < 0 or self.int_bits < 0:
            raise EncodingError(f"frac_bits and int_bits must be >= 0, got {self.frac_bits}, {self.int_bits}")
        if self.bits < 1:
            raise EncodingError("a fixed-point format needs at least one bit")
        if self.int_bits > 1000:
            raise EncodingError(f"int_bits={self.int_bits} exceeds the float64 range")

    @property
    def bits(self) -> int:
        """Magnitude bits of an encoded value (sign excluded)."""
        return self.int_bits + self.frac_bits

    @property
    def scale(self) -> float:
        return float(2.0**self.frac_bits)

    @property
    def max_int(self) -> int:
        """Largest encoded magnitude."""
        return (1 << self.bits) - 1

    @property
    def _max_scaled(self) -> float:
        """Largest float64 not above ``max_int``: above 53 bits, ``float(max_int)`` rounds *up* to
        ``2**bits``, which would let one value past the range check."""
        limit = float(self.max_int)
        return float(np.nextafter(limit, 0.0)) if int(limit) > self.max_int else limit

    @property
    def max_abs(self) -> float:
        """Largest float64 ``|x|`` that encodes (``max_int / 2**frac_bits``, rounded down)."""
        return math.ldexp(self._max_scaled, -self.frac_bits)

    @property
    def resolution(self) -> float:
        """Spacing between representable values; encoding error is at most half of it."""
        return float(2.0**-self.frac_bits)

    def encode(self, x: np.ndarray | float | list) -> np.ndarray:
        """``round(x * 2**frac_bits)`` element-wise (round half to even), any shape.

        Raises :class:`EncodingError` naming the first offending index for NaN/Inf or
        ``|x| > max_abs``.
        """
        arr = np.asarray(x)
        if arr.dtype == object or arr.dtype.kind not in "fiub":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise EncodingError(f"cannot encode values of dtype {arr.dtype}: {exc}") from None
        arr = arr.astype(np.float64, copy=False)
        flat = arr.ravel()
        bad = ~np.isfinite(flat)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EncodingError(f"cannot encode non-finite value {float(flat[i])!r} at index {_where(arr.shape, i)}")
        scaled = np.rint(np.ldexp(flat, self.frac_bits))
        too_big = np.abs(scaled) > self._max_scaled
        if too_big.any():
            i = int(np.flatnonzero(too_big)[0])
            raise EncodingError(
                f"value {float(flat[i])!r} at index {_where(arr.shape, i)} exceeds the fixed-point "
                f"range |x| <= {self.max_abs:.6g} (int_bits={self.int_bits}, "
                f"frac_bits={self.frac_bits})"
            )
        if self.bits <= _INT64_SAFE_BITS:
            return scaled.astype(np.int64).reshape(arr.shape)
        # float64 integers are exact; int() converts each without loss
        return np.array([int(v) for v in scaled.tolist()], dtype=object).reshape(arr.shape)

    def decode(self, ints: np.ndarray | list | int, extra_frac_bits: int = 0) -> np.ndarray:
        """Integers (int64 or Python ints, any shape) back to float64.

        ``extra_frac_bits``: additional scale carried by the integers, e.g. ``frac_bits`` of
        the other factor for the product of two encodings. Conversion of Python ints uses
        correctly rounded true division.
        """
        if extra_frac_bits < 0:
            raise EncodingError(f"extra_frac_bits must be >= 0, got {extra_frac_bits}")
        shift = self.frac_bits + extra_frac_bits
        arr = np.asarray(ints)
        if arr.dtype.kind in "iu":
            return np.ldexp(arr.astype(np.float64), -shift)
        if arr.dtype.kind == "f":
            raise EncodingError("decode expects integers, got floats (already decoded?)")
        flat = arr.ravel().tolist()
        denom = 1 << shift
        out = np.empty(len(flat), dtype=np.float64)
        for i, v in enumerate(flat):
            try:
                out[i] = int(v) / denom
            except OverflowError:
                raise EncodingError(
                    f"encoded value at index {_where(arr.shape, i)} is too large for float64 "
                    "(overflowed sum or wrong scale?)"
                ) from None
            except (TypeError, ValueError):
                raise EncodingError(f"non-integer {v!r} at index {_where(arr.shape, i)}") from None
        return out.reshape(arr.shape)

    def check_sum(self, n_summands: int, extra_bits: int = 0) -> int:
        """Bits (sign excluded) needed by a sum of ``n_summands`` encodings (times ``extra_bits`` factors).

        Lets a protocol assert up front that its sums fit a Paillier plaintext or a packed slot.
        """
        if n_summands < 1:
            raise EncodingError(f"n_summands must be >= 1, got {n_summands}")
        return self.bits + extra_bits + (n_summands - 1).bit_length()
