"""The raw ciphertext and exact-integer arithmetic of hetero-LR, kept in one reviewed place.

The parties work with :class:`EncryptedVector` through the public operations of
:mod:`protocols.paillier`; what those do not offer lives here, each recipe with its reason:

* :func:`encrypt_fresh` encrypts a few values under the *peer's* key without building that
  key's fixed-base table (a table costs ~1 s at 2048 bits and a restarted party would rebuild
  it every step for a handful of masks). Its output is a real encryption, so adding it to a
  computed vector (``enc + encrypt_fresh(...)``) makes the sum fresh: the peer who decrypts
  learns nothing from the ciphertext randomness.
* :func:`fresh_copy` re-randomises a computed aggregate the same way before it leaves.
* :func:`exact_matvec` computes ``X^T v`` exactly for the plaintext half of a gradient.

Nothing else in the package imports gmpy2 or handles a ciphertext as an integer.
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np

from protocols.common.party import ProtocolError
from protocols.paillier import DJN_EXPONENT_BITS, EncryptedVector, PaillierError, PublicKey


def exact_matvec(X: np.ndarray, v: np.ndarray) -> list[int]:
    """``X^T v`` exactly as Python ints for int64 ``X`` (|X| < 2^31) and int64 ``v``.

    Vectorised over 16-bit limbs of ``v`` so no int64 sum can overflow for < 2^16 rows per limb.
    """
    X = np.asarray(X, dtype=np.int64)
    rest = np.asarray(v, dtype=np.int64).copy()
    out = [0] * X.shape[1]
    shift = 0
    while rest.size and int(np.abs(rest).max()) >= (1 << 15):
        lo = rest & 0xFFFF
        rest >>= 16
        part = X.T @ lo
        out = [o + (int(p) << shift) for o, p in zip(out, part.tolist())]
        shift += 16
    if rest.size:
        part = X.T @ rest
        out = [o + (int(p) << shift) for o, p in zip(out, part.tolist())]
    return out


def parse_ciphertexts(pk: PublicKey, data: bytes, count: int, what: str) -> EncryptedVector:
    """``count`` ciphertexts under ``pk``; a wrong length or out-of-range value is refused."""
    width = pk.ciphertext_bytes
    if len(data) != count * width:
        raise ProtocolError(
            f"{what}: expected {count} ciphertexts ({count * width} bytes), got {len(data)} bytes "
            "(wrong length, wrong key size or truncated)"
        )
    try:
        return EncryptedVector.from_bytes(pk, data, validate=True)  # 0 < c < n^2, gcd(c, n) = 1 (batched)
    except PaillierError as exc:
        raise ProtocolError(f"{what}: {exc}") from None


def random_masks(count: int, bits: int) -> list[int]:
    """``count`` uniform ``bits``-bit masks from the OS generator (statistical hiding)."""
    return [secrets.randbits(bits) for _ in range(count)]


def encrypt_fresh(pk: PublicKey, values: list[int]) -> EncryptedVector:
    """A few encryptions under a *peer's* key without building its fixed-base table."""
    obf = [gmpy2.powmod(pk.hs, secrets.randbits(DJN_EXPONENT_BITS), pk.nsquare) for _ in values]
    return pk.encrypt(values, obfuscators=obf)


def fresh_copy(vec: EncryptedVector) -> EncryptedVector:
    """The same plaintexts with fresh randomness (``vec + Enc(0)``), ready to leave the node."""
    return vec + encrypt_fresh(vec.public_key, [0] * len(vec))
