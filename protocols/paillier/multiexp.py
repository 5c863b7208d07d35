"""Multi-exponentiation ``prod_i bases[i]^exponents[i] mod m`` with Pippenger's bucket method.

Why: the encrypted dot product ``[[X^T m]]`` is one multi-exponentiation per column. With
``N`` bases and ``b``-bit exponents, Pippenger costs about ``ceil(b/w) (N + 2^(w+1))``
multiplications for a window ``w`` chosen per call, against ``~1.5 b N`` for one powmod each.
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.paillier.errors import PaillierError
from protocols.paillier.integers import as_int64

__all__ = ["multi_exponentiate"]


def multi_exponentiate(bases: Sequence[mpz], exponents: np.ndarray, modulus: mpz, window: int | None = None) -> mpz:
    """``prod_i bases[i]^exponents[i] mod modulus`` with Pippenger's bucket method.

    Signed exponents: positive and negative parts are accumulated separately and the negative
    product is inverted once, so a column costs one inversion instead of one per base.
    Exponents that fit int64 take a numpy fast path; larger Python ints a generic one.
    """
    e = np.asarray(exponents)
    if e.shape != (len(bases),):
        raise PaillierError(f"{len(bases)} bases but exponents of shape {e.shape}")
    if e.dtype.kind == "f":
        raise PaillierError("exponents must be integers; encode floats with protocols.common.encoding")
    e64 = as_int64(e)
    if e64 is not None:
        pos = _pippenger(bases, np.where(e64 > 0, e64, 0), modulus, window)
        negs = np.where(e64 < 0, -e64, 0)
        if negs.any():
            pos = pos * gmpy2.invert(_pippenger(bases, negs, modulus, window), modulus) % modulus
        return pos
    ints = [int(v) for v in e.tolist()]
    big_pos = _pippenger_big(bases, [v if v > 0 else 0 for v in ints], modulus, window)
    big_negs = [-v if v < 0 else 0 for v in ints]
    if any(big_negs):
        big_pos = big_pos * gmpy2.invert(_pippenger_big(bases, big_negs, modulus, window), modulus) % modulus
    return big_pos


def _best_window(max_bits: int, n: int) -> int:
    # cost ~ (bits/w) * (N + 2^(w+1)) multiplications; pick the best w for this N
    return min(range(1, 17), key=lambda w: -(-max_bits // w) * (n + (2 << w)))


def _bucket_combine(buckets: list[mpz | None], top: int, modulus: mpz) -> mpz:
    """``prod_d B_d^d`` via running products from the top bucket down (2 * top multiplications)."""
    running = mpz(1)
    acc = mpz(1)
    for d in range(top, 0, -1):
        bd = buckets[d]
        if bd is not None:
            running = running * bd % modulus
        acc = acc * running % modulus
    return acc


def _pippenger(bases: Sequence[mpz], exps: np.ndarray, modulus: mpz, window: int | None) -> mpz:
    """Non-negative int64 exponents: digits are extracted for all bases at once with numpy."""
    nz = np.flatnonzero(exps)
    if nz.size == 0:
        return mpz(1)
    e_nz = exps[nz].astype(np.int64)
    max_bits = int(e_nz.max()).bit_length()
    window = window or _best_window(max_bits, nz.size)
    mask = (1 << window) - 1
    n_windows = -(-max_bits // window)
    base_nz = [bases[i] for i in nz.tolist()]
    result = mpz(1)
    for k in reversed(range(n_windows)):
        if result != 1:
            result = gmpy2.powmod(result, 1 << window, modulus)
        digits = (e_nz >> (k * window)) & mask
        idx = np.flatnonzero(digits)
        if idx.size == 0:
            continue
        buckets: list[mpz | None] = [None] * (mask + 1)
        dig = digits[idx]
        for i, d in zip(idx.tolist(), dig.tolist()):
            cur = buckets[d]
            buckets[d] = base_nz[i] if cur is None else cur * base_nz[i] % modulus
        result = result * _bucket_combine(buckets, int(dig.max()), modulus) % modulus
    return result


def _pippenger_big(bases: Sequence[mpz], exps: list[int], modulus: mpz, window: int | None) -> mpz:
    """Non-negative exponents of any size (Python ints): the generic, slower path."""
    pairs = [(b, e) for b, e in zip(bases, exps) if e]
    if not pairs:
        return mpz(1)
    max_bits = max(e.bit_length() for _, e in pairs)
    window = window or _best_window(max_bits, len(pairs))
    mask = (1 << window) - 1
    result = mpz(1)
    for k in reversed(range(-(-max_bits // window))):
        if result != 1:
            result = gmpy2.powmod(result, 1 << window, modulus)
        shift = k * window
        buckets: list[mpz | None] = [None] * (mask + 1)
        top = 0
        for b, e in pairs:
            d = (e >> shift) & mask
            if d:
                cur = buckets[d]
                buckets[d] = b if cur is None else cur * b % modulus
                top = max(top, d)
        if top:
            result = result * _bucket_combine(buckets, top, modulus) % modulus
    return result
