"""Invertible X25519 blinding scalars, so a bank can remove its own blinding (unbalanced PSI).

Why: in unbalanced PSI the bank learns ``H(x)^k_C`` for its ids ``x`` through one round trip
(blind with ``k_B``, the centre multiplies by ``k_C``, unblind with ``k_B^-1``), and compares
it against the centre's table prepared once per key period. X25519 (``cryptography``/OpenSSL,
~30 us per multiplication) clamps every scalar: it multiplies by ``2^254 + 8m`` with
``0 <= m < 2^251``. So an unblinding scalar must itself be a fixed point of clamping.

Hashed u-coordinates lie on the curve (points of order dividing ``8 l``) or on its twist
(order dividing ``4 l'``); a clamped scalar is a multiple of 8 and kills the small components,
so after blinding a point has order ``l`` (curve) or ``l'`` (twist). The inverse of the
clamped ``k_B`` modulo ``l`` (resp. ``l'``) has a clamp-stable representative with
probability ~1/2 each; :func:`new_invertible_secret` draws secrets until both exist (about
four draws). The side of a point (curve or twist) is the Legendre symbol of
``u^3 + 486662 u^2 + u`` mod ``p``, computed with gmpy2 by :func:`twist_mask`.
"""

from __future__ import annotations

import os

import gmpy2
import numpy as np

P = 2**255 - 19
ORDER_CURVE = 2**252 + 27742317777372353535851937790883648493  # l: #E = 8 l
ORDER_TWIST = (2 * P + 2 - 8 * ORDER_CURVE) // 4  # l': #E' = 4 l' (prime, 253 bits)
_A = 486662
_MASK255 = (1 << 255) - 1
_CLAMP_MIN = 1 << 254
_M_LIMIT = 1 << 251


def clamped(secret: bytes) -> int:
    """The scalar X25519 multiplies by for a 32-byte ``secret`` (RFC 7748 clamping)."""
    k = bytearray(secret)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def clamp_stable_inverse(k: int, order: int) -> bytes | None:
    """32 bytes ``s`` with ``clamped(s) = s`` and ``s * k = 1 (mod order)``, or None if none exists."""
    m = (pow(k, -1, order) - _CLAMP_MIN) * pow(8, -1, order) % order
    if m >= _M_LIMIT:
        return None
    return (_CLAMP_MIN + 8 * m).to_bytes(32, "little")


def new_invertible_secret() -> tuple[bytes, bytes, bytes]:
    """A fresh random X25519 secret and its unblinding scalars: ``(secret, inv_curve, inv_twist)``."""
    while True:
        secret = os.urandom(32)
        k = clamped(secret)
        inv_curve = clamp_stable_inverse(k, ORDER_CURVE)
        inv_twist = clamp_stable_inverse(k, ORDER_TWIST)
        if inv_curve is not None and inv_twist is not None:
            return secret, inv_curve, inv_twist


def twist_mask(points: bytes) -> bytes:
    """One byte per 32-byte u-coordinate: 1 if the point lies on the twist, 0 on the curve.

    A top-level function of ``bytes`` so it runs in the PSI worker pool (one chunk per call).
    u-coordinates are decoded as X25519 does (bit 255 ignored, reduced mod p).
    """
    legendre, mpz = gmpy2.legendre, gmpy2.mpz
    mv = memoryview(points)
    out = bytearray(len(points) // 32)
    for i in range(len(out)):
        u = mpz(int.from_bytes(mv[32 * i : 32 * i + 32], "little") & _MASK255) % P
        if legendre((u * u + _A * u + 1) * u % P, P) < 0:
            out[i] = 1
    return bytes(out)


def split_by_side(points: bytes, twist: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the curve points and of the twist points, given :func:`twist_mask` output."""
    mask = np.frombuffer(twist, dtype=np.uint8).astype(bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)
