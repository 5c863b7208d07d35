"""Fixed-base exponentiation tables for DJN obfuscators ``hs^a``, and their per-process cache.

Why: an obfuscator is ``hs^a`` for a fixed public base ``hs`` and a fresh short random exponent
``a``. With ``base^(j * 2^(w*i))`` precomputed for every window ``i`` and digit ``j``, ``hs^a``
costs ``ceil(bits/w)`` multiplications and no squarings. The key owner walks the same table
reduced mod ``p^2`` and ``q^2`` (half-size numbers) and recombines by CRT.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.paillier.errors import PaillierError
from protocols.paillier.params import TABLE_WINDOW

__all__ = ["FixedBaseTable", "cached_table", "crt_random_powers"]


class FixedBaseTable:
    """Precomputed ``base^(j * 2^(w*i)) mod m`` so ``base^e`` costs ``ceil(bits/w)`` multiplications.

    Memory: ``ceil(bits/w) * 2^w`` residues (22 x 4096 x 512 B ~ 46 MB for a 2048-bit key's n^2
    at w=12, half that per CRT factor).
    """

    def __init__(self, base: mpz, modulus: mpz, exponent_bits: int, window: int = TABLE_WINDOW):
        if not 1 <= window <= 16:
            raise PaillierError(f"fixed-base window must be in [1, 16], got {window}")
        self.modulus = modulus
        self.window = window
        self.n_windows = (exponent_bits + window - 1) // window
        self.exponent_bits = self.n_windows * window  # random exponents use every window fully
        self.mask = (1 << window) - 1
        rows = []
        b = base % modulus
        for _ in range(self.n_windows):
            row = [mpz(1), b]
            for _ in range(2, 1 << window):
                row.append(row[-1] * b % modulus)
            rows.append(row)
            b = gmpy2.powmod(b, 1 << window, modulus)
        self.rows = rows

    def pow(self, e: int) -> mpz:
        """``base^e`` for ``0 <= e < 2^exponent_bits``."""
        m = self.modulus
        acc = mpz(1)
        w, mask = self.window, self.mask
        for row in self.rows:
            d = e & mask
            if d:
                acc = acc * row[d] % m
            e >>= w
            if not e:
                break
        return acc

    def random_digits(self, count: int) -> list[list[int]]:
        """``count`` uniformly random exponents, as base-``2^w`` digit lists (CSPRNG)."""
        raw = np.frombuffer(secrets.token_bytes(2 * count * self.n_windows), dtype=np.uint16)
        digits: list[list[int]] = (raw.reshape(count, self.n_windows) & self.mask).tolist()
        return digits

    def pow_digits(self, digits: list[list[int]]) -> list[mpz]:
        """``base^e`` for each exponent ``e`` given as digits (see :meth:`random_digits`)."""
        m, rows = self.modulus, self.rows
        out = []
        for drow in digits:
            acc = mpz(1)
            for row, d in zip(rows, drow):
                acc = acc * row[d] % m
            out.append(acc)
        return out

    def random_powers(self, count: int) -> list[mpz]:
        """``count`` values ``base^a``, each with a fresh uniformly random ``exponent_bits``-bit ``a``."""
        return self.pow_digits(self.random_digits(count))


def crt_random_powers(tp: FixedBaseTable, tq: FixedBaseTable, psq_inv_mod_qsq: mpz, count: int) -> list[mpz]:
    """``count`` values ``base^a mod p^2 q^2`` from tables mod ``p^2`` and ``q^2`` (same ``a`` in both).

    CRT recombination: ``x = xp + p^2 ((xq - xp) (p^2)^-1 mod q^2)``. Two half-size chains cost
    less than one full-size chain, and only the key owner knows ``p`` and ``q``.
    """
    digits = tp.random_digits(count)
    rows_p, rows_q = tp.rows, tq.rows
    psq, qsq = tp.modulus, tq.modulus
    out = []
    for drow in digits:
        xp = xq = mpz(1)
        for rp, rq, d in zip(rows_p, rows_q, drow):
            xp = xp * rp[d] % psq
            xq = xq * rq[d] % qsq
        out.append(xp + psq * ((xq - xp) * psq_inv_mod_qsq % qsq))
    return out


_TABLE_CACHE: OrderedDict[tuple[int, int, int, int], FixedBaseTable] = OrderedDict()
_TABLE_CACHE_SIZE = 8
_TABLE_CACHE_LOCK = threading.Lock()


def cached_table(base: mpz, modulus: mpz, exponent_bits: int, window: int) -> FixedBaseTable:
    """A fixed-base table, reused within this process for the same (base, modulus, bits, window).

    Protocol parties are rebuilt from bytes on every Flower message (see protocols.common.party), which
    would otherwise recompute ~0.5-1 s of tables per key per message. Entries are keyed exactly
    by the values they are derived from (``hs`` powers mod ``n^2``, or mod ``p^2``/``q^2`` for the
    key owner, whose tables therefore never leave this process and its own worker processes).
    """
    key = (int(base), int(modulus), int(exponent_bits), int(window))
    with _TABLE_CACHE_LOCK:
        table = _TABLE_CACHE.get(key)
        if table is not None:
            _TABLE_CACHE.move_to_end(key)
            return table
    table = FixedBaseTable(mpz(base), mpz(modulus), exponent_bits, window)
    with _TABLE_CACHE_LOCK:
        _TABLE_CACHE[key] = table
        while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
            _TABLE_CACHE.popitem(last=False)
    return table
