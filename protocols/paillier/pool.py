"""Offline obfuscator pool: precomputed ``hs^a`` so that online encryption is one multiplication."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable

import numpy as np
from gmpy2 import mpz

from protocols.paillier.errors import PaillierError
from protocols.paillier.private import PrivateKey
from protocols.paillier.public import EncryptedVector, PublicKey

__all__ = ["ObfuscatorPool"]

log = logging.getLogger(__name__)


class ObfuscatorPool:
    """Offline precomputed obfuscators ``hs^a`` so that online encryption is one multiplication.

    Fill it while the protocol waits (e.g. between rounds); :meth:`take` hands out each
    obfuscator exactly once and computes fresh ones when the pool runs dry. Built from a
    :class:`PrivateKey` it uses the faster CRT path.
    """

    def __init__(self, key: PublicKey | PrivateKey, size: int = 0, *, workers: int | None = None):
        if not isinstance(key, (PublicKey, PrivateKey)):
            raise PaillierError(f"ObfuscatorPool needs a PublicKey or PrivateKey, got {type(key).__name__}")
        self.key = key
        self.public_key = key.public_key if isinstance(key, PrivateKey) else key
        self._items: deque[mpz] = deque()
        self._lock = threading.Lock()
        self.misses = 0  # obfuscators computed online because the pool was empty
        if size:
            self.fill(size, workers=workers)

    def __len__(self) -> int:
        return len(self._items)

    def fill(self, count: int, *, workers: int | None = None) -> None:
        fresh = self.key.random_obfuscators(count, workers=workers)
        with self._lock:
            self._items.extend(fresh)

    def take(self, count: int) -> list[mpz]:
        with self._lock:
            k = min(count, len(self._items))
            out = [self._items.popleft() for _ in range(k)]
        if k < count:
            self.misses += count - k
            log.debug("obfuscator pool short by %d; computing online", count - k)
            out.extend(self.key.random_obfuscators(count - k))
        return out

    def encrypt(self, plaintexts: Iterable[int] | np.ndarray) -> EncryptedVector:
        """A fresh encryption using pooled obfuscators (each used once)."""
        return self.public_key.encrypt_with(plaintexts, self.take)
