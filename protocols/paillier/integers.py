"""Checked conversion of plaintexts and exponents into the integer types the arithmetic uses.

Why a module of its own: every entry point (encryption, ``add_plain``, ``mul_plain``, ``dot``,
``multi_exponentiate``) must refuse floats, NaN/Inf, booleans and strings with a message naming
the offending index, and must never silently wrap; doing it once here keeps the messages alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from gmpy2 import mpz

from protocols.paillier.errors import PaillierError

__all__ = ["as_int64", "int64_matrix", "to_mpz_list"]

_INT_TYPES = (int, np.integer, type(mpz(0)))


def to_mpz_list(values: Iterable[int] | np.ndarray) -> list[mpz]:
    """A 1-D vector of integer plaintexts as ``mpz`` (floats must be encoded first)."""
    arr = values
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                bad = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
                raise PaillierError(
                    f"plaintext at index {bad} is NaN or Inf; encode floats first (protocols.common.encoding.FixedPoint)"
                )
            raise PaillierError("plaintexts must be integers; encode floats with protocols.common.encoding")
        if arr.ndim != 1:
            raise PaillierError(f"expected a 1-D vector of plaintexts, got shape {arr.shape}")
        if arr.dtype.kind not in "iuO":
            raise PaillierError(f"plaintexts must be integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "O":
            return [_as_mpz(v, i) for i, v in enumerate(arr.tolist())]
        return [mpz(v) for v in arr.tolist()]
    return [_as_mpz(v, i) for i, v in enumerate(arr)]


def _as_mpz(v: object, i: int) -> mpz:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise PaillierError(f"plaintext at index {i} is NaN or Inf; encode floats first")
        raise PaillierError("plaintexts must be integers; encode floats with protocols.common.encoding")
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, _INT_TYPES):
        raise PaillierError(f"plaintext at index {i} is a {type(v).__name__}, not an integer")
    return mpz(int(v))


def int64_matrix(X: np.ndarray) -> np.ndarray:
    """``X`` as int64 when every entry fits, else as an object array of Python ints (slow path)."""
    if X.dtype.kind == "f":
        raise PaillierError("dot needs an integer matrix; encode floats with protocols.common.encoding")
    if X.dtype.kind == "b":
        return X.astype(np.int64)
    if X.dtype.kind not in "iuO":
        raise PaillierError(f"dot needs an integer matrix, got dtype {X.dtype}")
    e64 = as_int64(X)
    if e64 is not None:
        return e64
    out = np.empty(X.shape, dtype=object)
    out.ravel()[:] = [int(v) for v in X.ravel().tolist()]
    return out


def _check_int_entries(e: np.ndarray) -> None:
    for i, v in enumerate(e.ravel().tolist()):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, _INT_TYPES):
            where = np.unravel_index(i, e.shape) if e.ndim > 1 else i
            raise PaillierError(f"exponent/matrix entry {where} is a {type(v).__name__}, not an integer")


def as_int64(e: np.ndarray) -> np.ndarray | None:
    """int64 view of integer exponents when all fit in (-2^63, 2^63), else ``None``.

    ``-2^63`` is excluded because the signed multi-exponentiation negates negative exponents.
    """
    if e.dtype.kind == "b":
        return e.astype(np.int64)
    if e.dtype.kind == "i":
        if e.size and int(e.min()) == np.iinfo(np.int64).min:
            return None  # cannot be negated in int64
        return e.astype(np.int64, copy=False)
    if e.dtype.kind == "u":
        if e.size and int(e.max()) >= 2**63:
            return None
        return e.astype(np.int64)
    if e.dtype == object:
        _check_int_entries(e)
        try:
            out = e.astype(np.int64)
        except (OverflowError, TypeError, ValueError):
            return None
        if out.size and int(out.min()) == np.iinfo(np.int64).min:
            return None
        return out
    return None
