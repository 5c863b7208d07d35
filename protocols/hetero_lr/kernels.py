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
* :func:`uniform_masks` / :func:`window` / :func:`unmask_window`: a gradient entry ``g`` leaves
  its owner as ``Enc(g + M)`` with ``M`` uniform over almost all of ``Z_n`` (the decrypting
  peer sees a value statistically ``2^(bound + 2 - key_bits)``-close to uniform, whatever the
  encrypted value was), the decrypting party returns only the low ``window`` bits, and the
  owner recovers ``g`` exactly from them and range-checks it.
* :func:`high_mask` hides everything above the low bits of a loss aggregate the same way.

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


def uniform_masks(pk: PublicKey, count: int, bound_bits: int) -> list[int]:
    """``count`` masks ``M = 2^bound_bits + R``, ``R`` uniform in ``[0, n - 2^(bound_bits+1))``.

    For ``|g| < 2^bound_bits`` the sum ``g + M`` lies in ``[0, n)``: no wrap, so the low bits
    of the decryption are exactly those of ``g + M`` (see :func:`unmask_window`). For *any*
    ``g`` (also one a dishonest peer inflated) ``g + M mod n`` is within statistical distance
    ``2^(bound_bits + 1) / n`` of uniform on ``Z_n``: the decrypting party learns nothing.
    """
    span = int(pk.n) - (1 << (bound_bits + 1))
    if span <= 0:
        raise ProtocolError(f"a {bound_bits}-bit bound does not fit a {pk.bits}-bit key")
    return [(1 << bound_bits) + secrets.randbelow(span) for _ in range(count)]  # Python ints: they go in the state


def signed_plaintext(pk: PublicKey, value: int) -> int:
    """``value mod n`` as the signed representative :meth:`PublicKey.encrypt` accepts."""
    n = int(pk.n)
    value = int(value) % n
    return value - n if value > n // 2 else value


def window(pk: PublicKey, decrypted: int, bits: int) -> int:
    """The low ``bits`` bits of a (signed) decryption taken as an element of ``Z_n``: all that leaves."""
    return (int(decrypted) % int(pk.n)) & ((1 << bits) - 1)


def unmask_window(value: int, mask: int, bits: int) -> int:
    """``g`` from ``(g + mask) mod 2^bits`` (the peer's returned window), as a signed integer."""
    g = (value - mask) & ((1 << bits) - 1)
    return g - (1 << bits) if g >> (bits - 1) else g


def high_mask(vec: EncryptedVector, low_bits: int) -> EncryptedVector:
    """``vec + Enc(2^low_bits * R)`` with fresh randomness, ``R`` uniform so that no sum wraps mod ``n``.

    The receiver reads ``T mod 2^low_bits`` exactly when ``|T| < 2^(low_bits - 1)``; every
    higher bit of a (possibly inflated) ``T`` is hidden by ``R`` (statistical distance
    ``2^(low_bits + 1) / n``). Also re-randomises, like :func:`fresh_copy`.
    """
    pk = vec.public_key
    top = (int(pk.n) - (1 << low_bits)) >> low_bits
    if top <= 2:
        raise ProtocolError(f"a {low_bits}-bit window does not fit a {pk.bits}-bit key")
    shifts = [signed_plaintext(pk, (1 + secrets.randbelow(top - 1)) << low_bits) for _ in range(len(vec))]
    return vec + encrypt_fresh(pk, shifts)


def encrypt_fresh(pk: PublicKey, values: list[int]) -> EncryptedVector:
    """A few encryptions under a *peer's* key without building its fixed-base table."""
    obf = [gmpy2.powmod(pk.hs, secrets.randbits(DJN_EXPONENT_BITS), pk.nsquare) for _ in values]
    return pk.encrypt(values, obfuscators=obf)


def fresh_copy(vec: EncryptedVector) -> EncryptedVector:
    """The same plaintexts with fresh randomness (``vec + Enc(0)``), ready to leave the node."""
    return vec + encrypt_fresh(vec.public_key, [0] * len(vec))
