"""What a holder of the public key computes: :class:`PublicKey` and the :class:`EncryptedVector`.

Both live here because each needs the other (a key encrypts into vectors, a vector checks and
uses its key); the key owner's side is in :mod:`protocols.paillier.private`.

Techniques (measured in ``simulations/bench/paillier.py``, documented in ``docs/protocols/paillier.md``):

* ``g = n + 1`` so ``g^m = 1 + m n (mod n^2)``; ``(1 + m n) r mod n^2`` is computed as
  ``r + n * (m r mod n)``, which avoids a full 4096-bit product.
* DJN obfuscation (Damgård–Jurik–Nielsen): instead of ``r^n`` with a 2048-bit ``r``, use
  ``hs^a`` with ``hs = h^n mod n^2`` fixed per key and a short random exponent ``a``
  (``DJN_EXPONENT_BITS`` bits, 2x the 128-bit security level), evaluated with a fixed-base
  window table (:mod:`protocols.paillier.fixed_base`).
* Multi-exponentiation for ``dot`` (:mod:`protocols.paillier.multiexp`); large vectors are split
  across worker processes (:mod:`protocols.paillier._workers`).

Keys are ``phe``'s own ``PaillierPublicKey`` underneath, and a ciphertext made here decrypts
with ``phe``'s ``raw_decrypt`` and vice versa. Plaintexts are integers in ``Z_n``; negative
integers are represented as ``n - |m|`` (see :mod:`protocols.common.encoding` for floats and
:mod:`protocols.paillier.packing` for several values per plaintext).

Secure by default on the wire (like ``phe``'s ``EncryptedNumber.ciphertext(be_secure=True)``):
a vector knows whether its ciphertexts carry randomness the key owner cannot know
(:attr:`EncryptedVector.fresh`), and :meth:`EncryptedVector.to_bytes` re-randomises one that does
not before it is serialised.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import paillier as phe_paillier

from protocols.common import parallel
from protocols.paillier import _workers
from protocols.paillier.errors import PaillierError
from protocols.paillier.fixed_base import FixedBaseTable, cached_table
from protocols.paillier.integers import int64_matrix, to_mpz_list
from protocols.paillier.params import DJN_EXPONENT_BITS, MIN_DJN_EXPONENT_BITS, MIN_KEY_BITS, default_window

__all__ = ["EncryptedVector", "PublicKey", "check_vector"]

_HAS_MPZ_BYTES = hasattr(mpz, "to_bytes") and hasattr(mpz, "from_bytes")


def _ct_from_bytes(chunk: bytes | memoryview) -> mpz:
    return mpz.from_bytes(chunk, "big") if _HAS_MPZ_BYTES else mpz(int.from_bytes(chunk, "big"))


def _ct_to_bytes(c: mpz, width: int) -> bytes:
    return c.to_bytes(width, "big") if _HAS_MPZ_BYTES else int(c).to_bytes(width, "big")


def _apply_obfuscators(ms: Sequence[mpz], obf: Sequence[mpz], n: mpz, nsq: mpz) -> list[mpz]:
    # (1 + m n) r = r + n (m r mod n)  (mod n^2): one short product and a mod-n reduction
    return [(r + n * (m * r % n)) % nsq for m, r in zip(ms, obf)]


class PublicKey:
    """A Paillier public key (wrapping ``phe.PaillierPublicKey``) with fast vector operations.

    ``hs`` is the DJN base (public); ``None`` draws a fresh one. ``djn_exponent_bits`` and
    ``table_window`` tune the obfuscator (see the module docs); defaults are the audited ones.
    """

    def __init__(
        self,
        phe_key: phe_paillier.PaillierPublicKey,
        *,
        hs: int | None = None,
        insecure_test_key: bool = False,
        djn_exponent_bits: int = DJN_EXPONENT_BITS,
        table_window: int | None = None,
    ):
        if not isinstance(phe_key, phe_paillier.PaillierPublicKey):
            raise PaillierError(f"expected a phe PaillierPublicKey, got {type(phe_key).__name__}")
        if phe_key.n.bit_length() < MIN_KEY_BITS - 1 and not insecure_test_key:
            raise PaillierError(
                f"refusing a {phe_key.n.bit_length()}-bit key: at least {MIN_KEY_BITS} "
                "bits required (pass insecure_test_key=True only in tests)"
            )
        if phe_key.g != phe_key.n + 1:
            raise PaillierError("only keys with g = n + 1 are supported (phe's default)")
        if djn_exponent_bits < MIN_DJN_EXPONENT_BITS and not insecure_test_key:
            raise PaillierError(
                f"DJN exponent of {djn_exponent_bits} bits is below the {MIN_DJN_EXPONENT_BITS}-bit minimum"
            )
        self.phe = phe_key
        self.n = mpz(phe_key.n)
        self.nsquare = self.n * self.n
        self.bits = int(self.n.bit_length())
        self.max_int = self.n // 2  # plaintexts above this decrypt as negative
        self.ciphertext_bytes = (int(self.nsquare.bit_length()) + 7) // 8
        self.insecure_test_key = insecure_test_key
        self.djn_exponent_bits = int(djn_exponent_bits)
        self.table_window = int(table_window) if table_window else default_window(self.bits)
        if hs is None:
            # DJN: h = -x^2 mod n for a random x, hs = h^n mod n^2 (public, fixed per key)
            x = mpz(secrets.randbelow(int(self.n) - 2) + 2)
            h = (-(x * x)) % self.n
            hs = gmpy2.powmod(h, self.n, self.nsquare)
        self.hs = mpz(hs)
        self._table: FixedBaseTable | None = None
        self._table_lock = threading.Lock()

    # -- identity and wire format -------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.n == other.n

    def __hash__(self) -> int:
        return hash(int(self.n))

    def __repr__(self) -> str:
        return f"PublicKey({self.bits} bits, {self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(int(self.n).to_bytes((self.bits + 7) // 8, "big")).hexdigest()[:16]

    def to_phe(self) -> phe_paillier.PaillierPublicKey:
        return self.phe

    def to_bytes(self) -> bytes:
        """``n`` and ``hs`` (the DJN base) so the receiver encrypts with the same fast table."""
        nb = (self.bits + 7) // 8
        return (
            nb.to_bytes(4, "big")
            + int(self.n).to_bytes(nb, "big")
            + int(self.hs).to_bytes(self.ciphertext_bytes, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, insecure_test_key: bool = False, **kwargs: int) -> PublicKey:
        if len(data) < 4:
            raise PaillierError("public key bytes truncated")
        nb = int.from_bytes(data[:4], "big")
        if len(data) < 4 + nb or nb == 0:
            raise PaillierError("public key bytes truncated")
        n = int.from_bytes(data[4 : 4 + nb], "big")
        hs_bytes = data[4 + nb :]
        if n < 3 or n % 2 == 0:
            raise PaillierError("public key modulus is not a valid odd modulus")
        if len(hs_bytes) != ((2 * n.bit_length()) + 7) // 8:
            raise PaillierError(
                f"public key DJN base has {len(hs_bytes)} bytes, expected "
                f"{((2 * n.bit_length()) + 7) // 8}: truncated or corrupted"
            )
        hs = int.from_bytes(hs_bytes, "big")
        if not 0 < hs < n * n or gmpy2.gcd(hs, n) != 1:
            raise PaillierError("public key DJN base is not in Z*_{n^2}")
        return cls(phe_paillier.PaillierPublicKey(n), hs=hs, insecure_test_key=insecure_test_key, **kwargs)

    # -- encryption ----------------------------------------------------------------------
    def _obfuscator_table(self) -> FixedBaseTable:
        if self._table is None:
            with self._table_lock:
                if self._table is None:
                    self._table = cached_table(self.hs, self.nsquare, self.djn_exponent_bits, self.table_window)
        return self._table

    def precompute(self) -> None:
        """Build the fixed-base table now (offline) instead of on the first encryption."""
        self._obfuscator_table()

    def random_obfuscators(self, count: int, *, workers: int | None = None) -> list[mpz]:
        """``count`` fresh ``hs^a`` values (each with a fresh random short exponent)."""
        args = (self.hs, self.nsquare, self.djn_exponent_bits, self.table_window)
        out = _workers.obfuscators_in_processes(_workers.public_obfuscators, args, count, workers)
        return out if out is not None else self._obfuscator_table().random_powers(count)

    def encode_plain(self, m: mpz) -> mpz:
        """``g^m mod n^2`` for ``g = n+1`` (reducing negatives into Z_n)."""
        return (1 + (m % self.n) * self.n) % self.nsquare

    def encrypt(
        self,
        plaintexts: Iterable[int] | np.ndarray,
        *,
        obfuscators: Sequence[mpz] | None = None,
        workers: int | None = None,
    ) -> EncryptedVector:
        """Encrypt signed integers (``|m| <= n // 2``) as ``(1 + m n) * hs^a mod n^2``.

        Given ``obfuscators`` must be fresh and used once (e.g. from an :class:`ObfuscatorPool`):
        the result is marked :attr:`~EncryptedVector.fresh` either way.
        """
        if obfuscators is not None:
            given = obfuscators
            return self.encrypt_with(plaintexts, lambda _count: given)
        return self.encrypt_with(plaintexts, lambda count: self.random_obfuscators(count, workers=workers))

    def encrypt_with(
        self, plaintexts: Iterable[int] | np.ndarray, obfuscators: Callable[[int], Sequence[mpz]]
    ) -> EncryptedVector:
        """Encrypt with ``obfuscators(count)``, called only once the plaintexts passed their checks.

        The one encryption path behind :meth:`encrypt`, the key owner's ``PrivateKey.encrypt``
        and ``ObfuscatorPool.encrypt``: bad input fails before any obfuscator is computed or taken.
        """
        ms = to_mpz_list(plaintexts)
        self._check_range(ms)
        obf = obfuscators(len(ms))
        if len(obf) < len(ms):
            raise PaillierError(f"not enough obfuscators: {len(obf)} for {len(ms)} plaintexts")
        return EncryptedVector(self, _apply_obfuscators(ms, obf, self.n, self.nsquare), fresh=True)

    def _check_range(self, ms: list[mpz]) -> None:
        lim = self.max_int
        for i, m in enumerate(ms):
            if m > lim or m < -lim:
                raise PaillierError(
                    f"plaintext {i} of {m.bit_length()} bits does not fit the "
                    f"{self.bits}-bit key (|m| must be <= n // 2)"
                )

    def encrypt_zero(self, count: int, *, workers: int | None = None) -> EncryptedVector:
        return EncryptedVector(self, self.random_obfuscators(count, workers=workers), fresh=True)


@dataclass
class EncryptedVector:
    """A vector of Paillier ciphertexts under one public key; operations are element-wise.

    ``fresh`` records whether every ciphertext carries randomness the key owner cannot know.
    Homomorphic results are otherwise deterministic functions of their inputs: ``c^k`` after
    ``mul_plain``/``dot`` is something the owner, who can recover the randomness ``r`` of ``c``,
    can recompute as ``r^k`` (and ``mul_plain`` by 0 gives the ciphertext 1, which reveals the
    plaintext 0). The rules: encryption and :meth:`rerandomize` give fresh vectors; ``a + b``
    and ``a - b`` are fresh if either side is (multiplying by a freshly randomised ciphertext
    re-randomises the product); :meth:`neg`, :meth:`add_plain`, indexing and :meth:`sum` keep the
    flag; :meth:`mul_plain`, :meth:`dot`, vectors built from raw ciphertexts, :meth:`from_bytes`
    and :meth:`from_phe` are not fresh; :meth:`concat` is fresh only if both parts are.
    :meth:`to_bytes` re-randomises a vector that is not fresh unless told ``be_secure=False``.
    """

    public_key: PublicKey
    ciphertexts: list[mpz]
    fresh: bool = field(default=False, kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, PublicKey):
            raise PaillierError(f"EncryptedVector needs a PublicKey, got {type(self.public_key).__name__}")
        if not isinstance(self.ciphertexts, list):
            self.ciphertexts = list(self.ciphertexts)

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return f"EncryptedVector({len(self)} ciphertexts, key {self.public_key.fingerprint})"

    def _derived(self, ciphertexts: list[mpz], *, fresh: bool) -> EncryptedVector:
        return EncryptedVector(self.public_key, ciphertexts, fresh=fresh)

    def __getitem__(self, idx: slice | int | np.ndarray | Sequence[int]) -> EncryptedVector:
        if isinstance(idx, slice):
            return self._derived(self.ciphertexts[idx], fresh=self.fresh)
        if isinstance(idx, (int, np.integer)):
            return self._derived([self.ciphertexts[int(idx)]], fresh=self.fresh)
        cts = self.ciphertexts
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (len(cts),):
                raise PaillierError(f"boolean mask of shape {arr.shape} for {len(cts)} ciphertexts")
            arr = np.flatnonzero(arr)
        try:
            return self._derived([cts[int(i)] for i in arr.ravel()], fresh=self.fresh)
        except IndexError:
            raise PaillierError(f"index out of range for {len(cts)} ciphertexts") from None

    def _same_key(self, other: EncryptedVector) -> None:
        check_vector(other, self.public_key, "combine")
        if len(other) != len(self):
            raise PaillierError(f"length mismatch: {len(self)} vs {len(other)}")

    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        self._same_key(other)
        nsq = self.public_key.nsquare
        out = [a * b % nsq for a, b in zip(self.ciphertexts, other.ciphertexts)]
        return self._derived(out, fresh=self.fresh or other.fresh)

    def neg(self) -> EncryptedVector:
        """``[[-m]]``: one modular inversion per ciphertext."""
        nsq = self.public_key.nsquare
        return self._derived([gmpy2.invert(c, nsq) for c in self.ciphertexts], fresh=self.fresh)

    def __neg__(self) -> EncryptedVector:
        return self.neg()

    def __sub__(self, other: EncryptedVector) -> EncryptedVector:
        self._same_key(other)
        return self + other.neg()

    def _plain_list(self, values: Iterable[int] | np.ndarray | int, what: str) -> list[mpz]:
        if isinstance(values, (bool, np.bool_)):
            raise PaillierError(f"{what} must be integers, got a bool")
        if isinstance(values, (int, np.integer)):
            return [mpz(int(values))] * len(self)
        ms = to_mpz_list(values)
        if len(ms) != len(self):
            raise PaillierError(f"length mismatch: {len(self)} ciphertexts, {len(ms)} {what}")
        return ms

    def add_plain(self, plaintexts: Iterable[int] | np.ndarray | int) -> EncryptedVector:
        """``[[m + k]]`` for integer ``k`` (a vector of the same length, or one int for all).

        ``k`` is taken mod ``n`` (so values already reduced into ``[0, n)`` work too).
        """
        ms = self._plain_list(plaintexts, "plaintexts")
        pk = self.public_key
        return self._derived(_apply_obfuscators(ms, self.ciphertexts, pk.n, pk.nsquare), fresh=self.fresh)

    def mul_plain(self, scalars: Iterable[int] | np.ndarray | int, *, workers: int | None = None) -> EncryptedVector:
        """``[[m * k]]`` element-wise for integer ``k`` (negative ``k`` uses the inverse). Not fresh."""
        ks = self._plain_list(scalars, "scalars")
        nsq = self.public_key.nsquare
        w = parallel.resolve_workers(workers, len(ks), "mul_plain")
        if w > 1:
            cts = self.ciphertexts
            parts = parallel.map_processes(
                _workers.mul_plain_chunk, [(nsq, cts[a:b], ks[a:b]) for a, b in parallel.split(len(ks), w)], w
            )
            if parts is not None:
                return self._derived([c for part in parts for c in part], fresh=False)
        return self._derived(_workers.mul_plain_chunk(nsq, self.ciphertexts, ks), fresh=False)

    def sum(self) -> EncryptedVector:
        nsq = self.public_key.nsquare
        acc = mpz(1)
        for c in self.ciphertexts:
            acc = acc * c % nsq
        return self._derived([acc], fresh=self.fresh)

    def dot(self, matrix: np.ndarray, *, workers: int | None = None) -> EncryptedVector:
        """``[prod_i c_i^{X_ij}]_j``: encrypted ``X^T m`` for an integer matrix X (rows = len(self)).

        Large inputs are split by rows across worker processes; each returns one partial
        product per column and the parent multiplies them (results are identical). Not fresh.
        """
        X = np.asarray(matrix)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise PaillierError(f"dot needs a 1-D or 2-D integer matrix, got shape {X.shape}")
        if X.shape[0] != len(self):
            raise PaillierError(f"matrix has {X.shape[0]} rows, vector has {len(self)} ciphertexts")
        X = int64_matrix(X)
        nsq = self.public_key.nsquare
        rows, cols = X.shape
        w = parallel.resolve_workers(workers, rows if cols else 0, "dot")
        if w > 1:
            cts = self.ciphertexts
            tasks = [(nsq, cts[a:b], X[a:b]) for a, b in parallel.split(rows, w)]
            parts = parallel.map_processes(_workers.dot_chunk, tasks, w)
            if parts is not None:
                out = list(parts[0])
                for part in parts[1:]:
                    out = [x * y % nsq for x, y in zip(out, part)]
                return self._derived(out, fresh=False)
        return self._derived(_workers.dot_chunk(nsq, self.ciphertexts, X), fresh=False)

    def rerandomize(self, *, obfuscators: Sequence[mpz] | None = None, workers: int | None = None) -> EncryptedVector:
        """Same plaintexts, fresh randomness (multiply by encryptions of zero)."""
        nsq = self.public_key.nsquare
        obf = obfuscators if obfuscators is not None else self.public_key.random_obfuscators(len(self), workers=workers)
        if len(obf) < len(self):
            raise PaillierError(f"not enough obfuscators: {len(obf)} for {len(self)} ciphertexts")
        return self._derived([c * r % nsq for c, r in zip(self.ciphertexts, obf)], fresh=True)

    def concat(self, other: EncryptedVector) -> EncryptedVector:
        check_vector(other, self.public_key, "concatenate")
        return self._derived(self.ciphertexts + other.ciphertexts, fresh=self.fresh and other.fresh)

    # -- wire format ----------------------------------------------------------------------
    def to_bytes(self, *, be_secure: bool = True) -> bytes:
        """Fixed-width big-endian ciphertexts, concatenated (``ciphertext_bytes`` each).

        Secure by default: a vector that is not :attr:`fresh` (e.g. the result of ``mul_plain``
        or ``dot``) is re-randomised first, so the bytes are never a deterministic function of
        values the key owner knows; a fresh one is serialised as is, at no extra cost.
        ``be_secure=False`` serialises the ciphertexts exactly as they are: only for node-local
        storage, or when the caller re-randomises in some other way.
        """
        vec = self.rerandomize() if be_secure and not self.fresh else self
        width = self.public_key.ciphertext_bytes
        return b"".join([_ct_to_bytes(c, width) for c in vec.ciphertexts])

    @classmethod
    def from_bytes(cls, public_key: PublicKey, data: bytes, *, validate: bool = True) -> EncryptedVector:
        """Ciphertexts from :meth:`to_bytes`, checked to lie in ``Z*_{n^2}`` unless ``validate=False``.

        Not fresh: the receiver cannot tell how the sender randomised them.
        """
        width = public_key.ciphertext_bytes
        if len(data) % width:
            raise PaillierError(
                f"ciphertext bytes length {len(data)} is not a multiple of {width}: wrong key or truncated message"
            )
        mv = memoryview(data)
        cts = [_ct_from_bytes(mv[i : i + width]) for i in range(0, len(data), width)]
        vec = cls(public_key, cts)
        if validate:
            vec.validate()
        return vec

    def validate(self) -> None:
        """Every ciphertext must lie in Z*_{n^2}: ``0 < c < n^2`` and ``gcd(c, n) = 1``.

        The gcd is batched: ``gcd(prod c_i mod n, n) = 1`` iff every ``gcd(c_i, n) = 1``
        (n = pq is prime-factored into p and q), so it costs one multiplication per ciphertext
        and a single gcd; only on failure are the individual gcds computed to name the culprit.
        """
        n, nsq = self.public_key.n, self.public_key.nsquare
        acc = mpz(1)
        for i, c in enumerate(self.ciphertexts):
            if not 0 < c < nsq:
                raise PaillierError(f"ciphertext {i} is outside Z*_{{n^2}} (wrong key or corrupted)")
            acc = acc * c % n
        if gmpy2.gcd(acc, n) != 1:
            for i, c in enumerate(self.ciphertexts):
                if gmpy2.gcd(c, n) != 1:
                    raise PaillierError(f"ciphertext {i} is not invertible mod n^2 (corrupted or malicious)")

    # -- interop with phe --------------------------------------------------------------
    def to_phe(self) -> list[phe_paillier.EncryptedNumber]:
        return [phe_paillier.EncryptedNumber(self.public_key.phe, int(c), 0) for c in self.ciphertexts]

    @classmethod
    def from_phe(cls, public_key: PublicKey, numbers: Sequence[phe_paillier.EncryptedNumber]) -> EncryptedVector:
        """``phe`` integer ciphertexts (exponent 0) under ``public_key``; not fresh."""
        for i, x in enumerate(numbers):
            if not isinstance(x, phe_paillier.EncryptedNumber):
                raise PaillierError(f"item {i} is a {type(x).__name__}, not a phe EncryptedNumber")
            if x.public_key != public_key.phe:
                raise PaillierError(f"phe ciphertext {i} made under a different public key")
            if x.exponent != 0:
                raise PaillierError(f"phe ciphertext {i} carries a float exponent; use raw integer encryptions")
        return cls(public_key, [mpz(x.ciphertext(be_secure=False)) for x in numbers])


def check_vector(vec: object, key: PublicKey, action: str) -> EncryptedVector:
    """``vec`` if it is an :class:`EncryptedVector` under ``key``; else a :class:`PaillierError`
    naming the ``action`` refused and, for a foreign key, both key fingerprints."""
    if not isinstance(vec, EncryptedVector):
        raise PaillierError(f"expected an EncryptedVector to {action}, got {type(vec).__name__}")
    if vec.public_key != key:
        raise PaillierError(
            f"cannot {action} ciphertexts under different public keys ({key.fingerprint} vs {vec.public_key.fingerprint})"
        )
    return vec
