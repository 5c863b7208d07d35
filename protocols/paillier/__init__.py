"""Paillier encryption: the only package (with the protocols' ``kernels`` modules) that does raw ciphertext arithmetic.

The public surface of the package; roles and helpers live in its modules."""

from protocols.paillier.core import (
    DJN_EXPONENT_BITS,
    MIN_DJN_EXPONENT_BITS,
    MIN_KEY_BITS,
    EncryptedVector,
    ObfuscatorPool,
    PaillierError,
    PrivateKey,
    PublicKey,
    cached_table,
    generate_keypair,
    multi_exponentiate,
)

__all__ = [
    "DJN_EXPONENT_BITS",
    "EncryptedVector",
    "MIN_DJN_EXPONENT_BITS",
    "MIN_KEY_BITS",
    "ObfuscatorPool",
    "PaillierError",
    "PrivateKey",
    "PublicKey",
    "cached_table",
    "generate_keypair",
    "multi_exponentiate",
]
