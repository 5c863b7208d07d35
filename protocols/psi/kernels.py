"""Hot kernels of ECDH-PSI (hash-and-blind, re-blind: one chunk of items per call) and their pools.

The only PSI module that touches raw X25519 (the ``kernels.py`` convention: dangerous
primitives stay in kernels and in :mod:`protocols.common.channel`).

Why a separate module: these functions run inside ``multiprocessing`` worker processes, so
they must be importable top-level functions that touch nothing but their arguments (the
worker never sees the party object, its ids outside the chunk, or the protocol state).
Each call takes a chunk of ~10k items and returns one ``bytes`` buffer, so inter-process
traffic is a handful of large pickles instead of millions of small objects.

Cost model: one X25519 scalar multiplication through OpenSSL (``cryptography``) is ~40 us;
hashing (BLAKE2b) and object creation add ~2 us, so the loops below are as thin as possible:
bound methods hoisted, one list comprehension, one ``b"".join``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

POINT_BYTES = 32
HASH_PERSON = b"fedcredit-psi-v1"  # BLAKE2b personalisation: 16 bytes, domain separation


class LowOrderPoint(ValueError):
    """A point whose X25519 product is all-zero (a low-order point): never honest input."""

    def __init__(self, index: int) -> None:
        super().__init__(f"item {index} of the chunk is a low-order point")
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across the worker boundary
        return (LowOrderPoint, (self.index,))


def session_salt(session: str | bytes) -> bytes:
    """16-byte salt of the run: both parties must use the same session (e.g. the run id)."""
    data = session.encode() if isinstance(session, str) else bytes(session)
    return hashlib.blake2b(data, digest_size=16, person=b"fedcredit-psi-ss").digest()


def hash_id(item: bytes, salt: bytes) -> bytes:
    """Domain-separated hash of one normalised id to a 32-byte X25519 u-coordinate.

    BLAKE2b-256 with personalisation ``fedcredit-psi-v1`` and the run's 16-byte session salt:
    hashes from another protocol, version or run never collide with ours.
    """
    return hashlib.blake2b(item, digest_size=32, person=HASH_PERSON, salt=salt).digest()


def _first_low_order(key: X25519PrivateKey, points: list[bytes]) -> int:
    for i, p in enumerate(points):
        try:
            key.exchange(X25519PublicKey.from_public_bytes(p))
        except ValueError:
            return i
    return -1  # pragma: no cover - only reached if OpenSSL failed for another reason


def hash_and_blind(task: tuple[bytes, bytes, np.ndarray]) -> bytes:
    """``H(id)^k`` for each id of the chunk; returns ``32 * len(ids)`` bytes in input order.

    ``task = (secret, salt, ids)`` with ``ids`` a fixed-width ``S`` numpy array of normalised
    ids (ASCII/UTF-8, no NUL bytes).
    """
    secret, salt, ids = task
    key = X25519PrivateKey.from_private_bytes(secret)
    exchange = key.exchange
    public = X25519PublicKey.from_public_bytes
    base = hashlib.blake2b(digest_size=32, person=HASH_PERSON, salt=salt)
    copy = base.copy
    hashed: list[bytes] = []
    append = hashed.append
    for item in ids.tolist():
        h = copy()
        h.update(item)
        append(h.digest())
    try:
        return b"".join([exchange(public(h)) for h in hashed])
    except ValueError:
        raise LowOrderPoint(_first_low_order(key, hashed)) from None


def reblind(task: tuple[bytes, bytes, int]) -> bytes:
    """``P^k`` for each 32-byte point ``P`` of the chunk, each result cut to ``keep`` bytes.

    ``task = (secret, points, keep)``. Truncating inside the worker keeps the pickle that
    comes back to the party small (``keep`` bytes per item instead of 32).
    """
    secret, points, keep = task
    key = X25519PrivateKey.from_private_bytes(secret)
    exchange = key.exchange
    public = X25519PublicKey.from_public_bytes
    mv = memoryview(points)
    pts = [bytes(mv[o : o + POINT_BYTES]) for o in range(0, len(points), POINT_BYTES)]
    try:
        if keep >= POINT_BYTES:
            return b"".join([exchange(public(p)) for p in pts])
        return b"".join([exchange(public(p))[:keep] for p in pts])
    except ValueError:
        raise LowOrderPoint(_first_low_order(key, pts)) from None


class ChunkMapper(Protocol):
    """What a party needs from a pool: ``multiprocessing.pool.Pool`` satisfies it."""

    def imap(self, func: Callable[[Any], bytes], iterable: Iterable[Any]) -> Iterator[bytes]: ...


class SerialMapper:
    """In-process mapper for ``workers=1`` (no pickling, no processes)."""

    def imap(self, func: Callable[[Any], bytes], iterable: Iterable[Any]) -> Iterator[bytes]:
        return map(func, iterable)


def open_pool(workers: int | None = None, start_method: str | None = None) -> Any:
    """A ``multiprocessing`` pool for the X25519 kernels (caller closes it).

    Use ``start_method="forkserver"`` inside multi-threaded hosts (Flower, gRPC), where
    ``fork`` is unsafe.
    """
    ctx = multiprocessing.get_context(start_method)
    return ctx.Pool(processes=workers or os.cpu_count() or 1)
