"""Paillier encryption: the only package (with the protocols' ``kernels`` modules) that does raw ciphertext arithmetic.

The public surface of the package. Where each part lives:

* :mod:`~protocols.paillier.public`: :class:`PublicKey` and :class:`EncryptedVector` (what a
  holder of the public key computes; vectors are re-randomised on ``to_bytes()`` unless fresh);
* :mod:`~protocols.paillier.private`: :class:`PrivateKey`, :func:`generate_keypair` (the key owner);
* :mod:`~protocols.paillier.pool`: :class:`ObfuscatorPool` (offline obfuscators);
* :mod:`~protocols.paillier.packing`: :class:`~protocols.paillier.packing.Packer` (several values
  per plaintext);
* building blocks: :mod:`~protocols.paillier.params` (key and DJN sizes), :mod:`~protocols.paillier.errors`,
  :mod:`~protocols.paillier.integers` (checked plaintext conversion), :mod:`~protocols.paillier.fixed_base`
  (obfuscator tables and :func:`cached_table`), :mod:`~protocols.paillier.multiexp`
  (:func:`multi_exponentiate`), :mod:`~protocols.paillier._workers` (process-pool tasks).
"""

from protocols.paillier.errors import PaillierError
from protocols.paillier.fixed_base import cached_table
from protocols.paillier.multiexp import multi_exponentiate
from protocols.paillier.params import DJN_EXPONENT_BITS, MIN_DJN_EXPONENT_BITS, MIN_KEY_BITS
from protocols.paillier.pool import ObfuscatorPool
from protocols.paillier.private import PrivateKey, generate_keypair
from protocols.paillier.public import EncryptedVector, PublicKey

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
