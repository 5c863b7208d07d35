"""Fast Paillier encryption over numpy-shaped vectors, on gmpy2, interoperable with ``phe``.

Why not ``phe`` directly: its ``EncryptedNumber`` API does one big-int operation per Python
object with ``r^n`` full-size obfuscation (~75 encryptions/s at 2048 bits). Vertical training
needs tens of thousands of encryptions and multi-exponentiations per batch. The techniques here
(measured in ``simulations/bench/paillier.py``, documented in ``docs/protocols/paillier.md``):

* ``g = n + 1`` so ``g^m = 1 + m n (mod n^2)``; ``(1 + m n) r mod n^2`` is computed as
  ``r + n * (m r mod n)``, which avoids a full 4096-bit product.
* DJN obfuscation (Damgård–Jurik–Nielsen): instead of ``r^n`` with a 2048-bit ``r``, use
  ``hs^a`` with ``hs = h^n mod n^2`` fixed per key and a short random exponent ``a``
  (``DJN_EXPONENT_BITS`` bits, 2x the 128-bit security level), evaluated with a fixed-base
  window table: ``bits / window`` modular multiplications and no squarings.
* Key owner: the same table reduced mod ``p^2`` and ``q^2`` with CRT recombination
  (multiplications on half-size numbers).
* An optional offline :class:`ObfuscatorPool`: precomputed ``hs^a`` so an online encryption
  is one multiplication.
* CRT decryption with precomputed ``hp``, ``hq``, batched through ``gmpy2.powmod_base_list``
  (which releases the GIL, so batches run on all cores with plain threads).
* Multi-exponentiation ``prod_i c_i^{x_ij}`` with Pippenger's bucket method per column,
  signed exponents with one inversion per column.
* Large vectors are split across worker processes (:mod:`protocols.common.parallel`).

Keys are ``phe``'s own ``PaillierPublicKey``/``PaillierPrivateKey`` underneath so users can bring
keys, and a ciphertext made here decrypts with ``phe``'s ``raw_decrypt`` and vice versa.
Plaintexts are integers in ``Z_n``; negative integers are represented as ``n - |m|`` and
decrypted back to negative when above ``n // 2`` (see :mod:`protocols.common.encoding` for floats
and :mod:`protocols.paillier.packing` for several values per plaintext).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np
from gmpy2 import mpz
from phe import paillier as phe_paillier

from protocols.common import parallel

log = logging.getLogger(__name__)

MIN_KEY_BITS = 2048
DJN_EXPONENT_BITS = 256  # short exponent for hs^a; 2x the 128-bit security level (see docs)
MIN_DJN_EXPONENT_BITS = 224  # 2x the 112-bit level NIST assigns to 2048-bit factoring
_TABLE_WINDOW = 12  # fixed-base window: 22 multiplications per 256-bit exponent, ~23 MB/table at n^2
_SMALL_KEY_WINDOW = 8  # test keys (< 2048 bits): cheap tables, fast test start-up

_HAS_MPZ_BYTES = hasattr(mpz, "to_bytes") and hasattr(mpz, "from_bytes")


class PaillierError(ValueError):
    """Bad key, ciphertext or plaintext: the message says which and why."""


def _to_mpz_list(values: Iterable[int] | np.ndarray) -> list[mpz]:
    arr = values
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                bad = int(np.flatnonzero(~np.isfinite(arr.ravel()))[0])
                raise PaillierError(
                    f"plaintext at index {bad} is NaN or Inf; encode floats first (protocols.common.encoding.FixedPoint)"
                )
            raise PaillierError("plaintexts must be integers; encode floats with protocols.common.encoding")
        if arr.ndim != 1:
            raise PaillierError(f"expected a 1-D vector of plaintexts, got shape {arr.shape}")
        if arr.dtype.kind not in "iuO":
            raise PaillierError(f"plaintexts must be integers, got dtype {arr.dtype}")
        if arr.dtype.kind == "O":
            return [_as_mpz(v, i) for i, v in enumerate(arr.tolist())]
        return [mpz(v) for v in arr.tolist()]
    return [_as_mpz(v, i) for i, v in enumerate(arr)]


def _as_mpz(v: object, i: int) -> mpz:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            raise PaillierError(f"plaintext at index {i} is NaN or Inf; encode floats first")
        raise PaillierError("plaintexts must be integers; encode floats with protocols.common.encoding")
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, type(mpz(0)))):
        raise PaillierError(f"plaintext at index {i} is a {type(v).__name__}, not an integer")
    return mpz(int(v))


def _ct_from_bytes(chunk: bytes) -> mpz:
    return mpz.from_bytes(chunk, "big") if _HAS_MPZ_BYTES else mpz(int.from_bytes(chunk, "big"))


def _ct_to_bytes(c: mpz, width: int) -> bytes:
    return c.to_bytes(width, "big") if _HAS_MPZ_BYTES else int(c).to_bytes(width, "big")


class _FixedBaseTable:
    """Precomputed ``base^(j * 2^(w*i)) mod m`` so ``base^e`` costs ``ceil(bits/w)`` multiplications.

    Memory: ``ceil(bits/w) * 2^w`` residues (22 x 4096 x 512 B ~ 46 MB for a 2048-bit key's n^2
    at w=12, half that per CRT factor).
    """

    def __init__(self, base: mpz, modulus: mpz, exponent_bits: int, window: int = _TABLE_WINDOW):
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
        return (raw.reshape(count, self.n_windows) & self.mask).tolist()

    def pow_digits(self, digits: list[list[int]]) -> list[mpz]:
        m, rows = self.modulus, self.rows
        out = []
        for drow in digits:
            acc = mpz(1)
            for row, d in zip(rows, drow):
                acc = acc * row[d] % m
            out.append(acc)
        return out


_TABLE_CACHE: OrderedDict[tuple[int, int, int, int], _FixedBaseTable] = OrderedDict()
_TABLE_CACHE_SIZE = 8
_TABLE_CACHE_LOCK = threading.Lock()


def cached_table(base: mpz, modulus: mpz, exponent_bits: int, window: int) -> _FixedBaseTable:
    """A fixed-base table, reused within this process for the same (base, modulus, bits, window).

    Protocol parties are rebuilt from bytes on every Flower message (see protocols.common.party), which
    would otherwise recompute ~0.5-1 s of tables per key per message. The cache holds only
    public values derived from the key (``hs`` powers), and entries are keyed by them exactly.
    """
    key = (int(base), int(modulus), int(exponent_bits), int(window))
    with _TABLE_CACHE_LOCK:
        table = _TABLE_CACHE.get(key)
        if table is not None:
            _TABLE_CACHE.move_to_end(key)
            return table
    table = _FixedBaseTable(mpz(base), mpz(modulus), exponent_bits, window)
    with _TABLE_CACHE_LOCK:
        _TABLE_CACHE[key] = table
        while len(_TABLE_CACHE) > _TABLE_CACHE_SIZE:
            _TABLE_CACHE.popitem(last=False)
    return table


def _default_window(bits: int) -> int:
    return _TABLE_WINDOW if bits >= MIN_KEY_BITS - 1 else _SMALL_KEY_WINDOW


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
        self.table_window = int(table_window) if table_window else _default_window(self.bits)
        if hs is None:
            # DJN: h = -x^2 mod n for a random x, hs = h^n mod n^2 (public, fixed per key)
            x = mpz(secrets.randbelow(int(self.n) - 2) + 2)
            h = (-(x * x)) % self.n
            hs = gmpy2.powmod(h, self.n, self.nsquare)
        self.hs = mpz(hs)
        self._table: _FixedBaseTable | None = None
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
    def _obfuscator_table(self) -> _FixedBaseTable:
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
        w = parallel.resolve_workers(workers, count, "encrypt")
        if w > 1:
            parts = parallel.map_processes(
                _task_public_obfuscators,
                [
                    (self.to_bytes(), self.djn_exponent_bits, self.table_window, b - a)
                    for a, b in parallel.split(count, w)
                ],
                w,
            )
            if parts is not None:
                return [r for part in parts for r in part]
        table = self._obfuscator_table()
        return table.pow_digits(table.random_digits(count))

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
        """Encrypt signed integers (``|m| <= n // 2``) as ``(1 + m n) * hs^a mod n^2``."""
        ms = _to_mpz_list(plaintexts)
        self._check_range(ms)
        obf = obfuscators if obfuscators is not None else self.random_obfuscators(len(ms), workers=workers)
        return self._encrypt_checked(ms, obf)

    def _encrypt_checked(self, ms: list[mpz], obf: Sequence[mpz]) -> EncryptedVector:
        if len(obf) < len(ms):
            raise PaillierError(f"not enough obfuscators: {len(obf)} for {len(ms)} plaintexts")
        return EncryptedVector(self, _apply_obfuscators(ms, obf, self.n, self.nsquare))

    def _check_range(self, ms: list[mpz]) -> None:
        lim = self.max_int
        for i, m in enumerate(ms):
            if m > lim or m < -lim:
                raise PaillierError(
                    f"plaintext {i} of {m.bit_length()} bits does not fit the "
                    f"{self.bits}-bit key (|m| must be <= n // 2)"
                )

    def encrypt_zero(self, count: int, *, workers: int | None = None) -> EncryptedVector:
        return EncryptedVector(self, self.random_obfuscators(count, workers=workers))


def _apply_obfuscators(ms: Sequence[mpz], obf: Sequence[mpz], n: mpz, nsq: mpz) -> list[mpz]:
    # (1 + m n) r = r + n (m r mod n)  (mod n^2): one short product and a mod-n reduction
    return [(r + n * (m * r % n)) % nsq for m, r in zip(ms, obf)]


class PrivateKey:
    """Paillier private key with CRT decryption and CRT (key-owner) encryption."""

    def __init__(self, public_key: PublicKey, p: int, q: int):
        if not isinstance(public_key, PublicKey):
            raise PaillierError(f"expected a PublicKey, got {type(public_key).__name__}")
        if p * q != public_key.n:
            raise PaillierError("private key factors do not match the public key")
        if p == q:
            raise PaillierError("p and q must differ")
        self.public_key = public_key
        self.p, self.q = (mpz(p), mpz(q)) if p < q else (mpz(q), mpz(p))
        p, q = self.p, self.q
        self.psquare, self.qsquare = p * p, q * q
        self.p_inverse = gmpy2.invert(p, q)
        self.hp = self._h_function(p, self.psquare)
        self.hq = self._h_function(q, self.qsquare)
        # CRT recombination mod n^2: x = xp + p^2 * ((xq - xp) * (p^2)^-1 mod q^2)
        self._psq_inv_mod_qsq = gmpy2.invert(self.psquare, self.qsquare)
        self._tables: tuple[_FixedBaseTable, _FixedBaseTable] | None = None
        self._table_lock = threading.Lock()

    def _h_function(self, x: mpz, xsquare: mpz) -> mpz:
        n = self.public_key.n
        return gmpy2.invert(((gmpy2.powmod(n + 1, x - 1, xsquare) - 1) // x) % x, x)

    def __repr__(self) -> str:
        return f"PrivateKey(for {self.public_key!r})"

    @classmethod
    def from_phe(cls, key: phe_paillier.PaillierPrivateKey, *, insecure_test_key: bool = False) -> PrivateKey:
        if not isinstance(key, phe_paillier.PaillierPrivateKey):
            raise PaillierError(f"expected a phe PaillierPrivateKey, got {type(key).__name__}")
        return cls(PublicKey(key.public_key, insecure_test_key=insecure_test_key), key.p, key.q)

    def to_phe(self) -> phe_paillier.PaillierPrivateKey:
        return phe_paillier.PaillierPrivateKey(self.public_key.phe, int(self.p), int(self.q))

    def to_bytes(self) -> bytes:
        """Node-local persistence only (e.g. Flower ``context.state``): NEVER put on the wire."""
        pb = (int(self.p).bit_length() + 7) // 8
        return (
            pb.to_bytes(4, "big")
            + int(self.p).to_bytes(pb, "big")
            + int(self.q).to_bytes(pb + 1, "big")
            + self.public_key.to_bytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes, *, insecure_test_key: bool = False) -> PrivateKey:
        if len(data) < 4:
            raise PaillierError("private key bytes truncated")
        pb = int.from_bytes(data[:4], "big")
        if len(data) < 4 + 2 * pb + 1:
            raise PaillierError("private key bytes truncated")
        p = int.from_bytes(data[4 : 4 + pb], "big")
        q = int.from_bytes(data[4 + pb : 4 + 2 * pb + 1], "big")
        public = PublicKey.from_bytes(data[4 + 2 * pb + 1 :], insecure_test_key=insecure_test_key)
        return cls(public, p, q)

    # -- key-owner encryption (CRT) -------------------------------------------------------
    def _crt_tables(self) -> tuple[_FixedBaseTable, _FixedBaseTable]:
        if self._tables is None:
            with self._table_lock:
                if self._tables is None:
                    pk = self.public_key
                    self._tables = (
                        cached_table(pk.hs % self.psquare, self.psquare, pk.djn_exponent_bits, pk.table_window),
                        cached_table(pk.hs % self.qsquare, self.qsquare, pk.djn_exponent_bits, pk.table_window),
                    )
        return self._tables

    def precompute(self) -> None:
        """Build the key owner's CRT tables now (offline) instead of on the first encryption."""
        self._crt_tables()

    def random_obfuscators(self, count: int, *, workers: int | None = None) -> list[mpz]:
        """``hs^a mod n^2`` computed mod p^2 and q^2 with the same ``a`` (~2-3x faster than public-key)."""
        w = parallel.resolve_workers(workers, count, "encrypt")
        if w > 1:
            pk = self.public_key
            parts = parallel.map_processes(
                _task_owner_obfuscators,
                [(self.to_bytes(), pk.djn_exponent_bits, pk.table_window, b - a) for a, b in parallel.split(count, w)],
                w,
            )
            if parts is not None:
                return [r for part in parts for r in part]
        tp, tq = self._crt_tables()
        digits = tp.random_digits(count)
        rows_p, rows_q = tp.rows, tq.rows
        psq, inv, qsq = self.psquare, self._psq_inv_mod_qsq, self.qsquare
        out = []
        for drow in digits:
            xp = xq = mpz(1)
            for rp, rq, d in zip(rows_p, rows_q, drow):
                xp = xp * rp[d] % psq
                xq = xq * rq[d] % qsq
            out.append(xp + psq * ((xq - xp) * inv % qsq))
        return out

    def encrypt(self, plaintexts: Iterable[int] | np.ndarray, *, workers: int | None = None) -> EncryptedVector:
        ms = _to_mpz_list(plaintexts)
        self.public_key._check_range(ms)
        return self.public_key._encrypt_checked(ms, self.random_obfuscators(len(ms), workers=workers))

    # -- decryption ----------------------------------------------------------------------
    def decrypt_raw(self, ciphertexts: Sequence[mpz], *, workers: int | None = None) -> list[mpz]:
        """Plaintexts in ``[0, n)`` (CRT; batches of ``powmod_base_list`` on a thread pool)."""
        cts = list(ciphertexts)
        w = parallel.resolve_workers(workers, len(cts), "decrypt")
        if w > 1:
            parts = parallel.map_threads(self._decrypt_chunk, [(cts[a:b],) for a, b in parallel.split(len(cts), w)], w)
            return [m for part in parts for m in part]
        return self._decrypt_chunk(cts)

    def _decrypt_chunk(self, cts: list[mpz]) -> list[mpz]:
        p, q, psq, qsq = self.p, self.q, self.psquare, self.qsquare
        hp, hq, pinv = self.hp, self.hq, self.p_inverse
        xs = gmpy2.powmod_base_list(cts, p - 1, psq)
        ys = gmpy2.powmod_base_list(cts, q - 1, qsq)
        out = []
        for x, y in zip(xs, ys):
            mp = (x - 1) // p * hp % p
            mq = (y - 1) // q * hq % q
            out.append(mp + ((mq - mp) * pinv % q) * p)
        return out

    def decrypt(self, vec: EncryptedVector, *, workers: int | None = None) -> np.ndarray:
        """Signed integer plaintexts as a numpy object array of Python ints."""
        if not isinstance(vec, EncryptedVector):
            raise PaillierError(f"decrypt expects an EncryptedVector, got {type(vec).__name__}")
        if vec.public_key != self.public_key:
            raise PaillierError(
                "ciphertexts were made under a different public key "
                f"({vec.public_key.fingerprint} != {self.public_key.fingerprint})"
            )
        n, lim = self.public_key.n, self.public_key.max_int
        raw = self.decrypt_raw(vec.ciphertexts, workers=workers)
        return np.array([int(m - n) if m > lim else int(m) for m in raw], dtype=object)


def generate_keypair(bits: int = MIN_KEY_BITS, *, insecure_test_key: bool = False) -> tuple[PublicKey, PrivateKey]:
    """New key pair via ``phe`` (its prime generation), wrapped for fast operations."""
    if bits < MIN_KEY_BITS and not insecure_test_key:
        raise PaillierError(
            f"refusing {bits}-bit keys: at least {MIN_KEY_BITS} bits required (insecure_test_key=True only in tests)"
        )
    pk, sk = phe_paillier.generate_paillier_keypair(n_length=bits)
    private = PrivateKey.from_phe(sk, insecure_test_key=insecure_test_key)
    return private.public_key, private


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
        ms = _to_mpz_list(plaintexts)
        self.public_key._check_range(ms)
        return self.public_key._encrypt_checked(ms, self.take(len(ms)))


@dataclass
class EncryptedVector:
    """A vector of Paillier ciphertexts under one public key; operations are element-wise.

    Results of homomorphic operations are deterministic functions of their inputs (and
    ``mul_plain`` by 0 yields the ciphertext 1, which reveals the plaintext 0): call
    :meth:`rerandomize` before a result leaves the node.
    """

    public_key: PublicKey
    ciphertexts: list[mpz]

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, PublicKey):
            raise PaillierError(f"EncryptedVector needs a PublicKey, got {type(self.public_key).__name__}")
        if not isinstance(self.ciphertexts, list):
            self.ciphertexts = list(self.ciphertexts)

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def __repr__(self) -> str:
        return f"EncryptedVector({len(self)} ciphertexts, key {self.public_key.fingerprint})"

    def __getitem__(self, idx: slice | int | np.ndarray | Sequence[int]) -> EncryptedVector:
        if isinstance(idx, slice):
            return EncryptedVector(self.public_key, self.ciphertexts[idx])
        if isinstance(idx, (int, np.integer)):
            return EncryptedVector(self.public_key, [self.ciphertexts[int(idx)]])
        cts = self.ciphertexts
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (len(cts),):
                raise PaillierError(f"boolean mask of shape {arr.shape} for {len(cts)} ciphertexts")
            arr = np.flatnonzero(arr)
        try:
            return EncryptedVector(self.public_key, [cts[int(i)] for i in arr.ravel()])
        except IndexError:
            raise PaillierError(f"index out of range for {len(cts)} ciphertexts") from None

    def _same_key(self, other: EncryptedVector) -> None:
        if not isinstance(other, EncryptedVector):
            raise PaillierError(f"expected an EncryptedVector, got {type(other).__name__}")
        if other.public_key != self.public_key:
            raise PaillierError(
                "cannot combine ciphertexts under different public keys "
                f"({self.public_key.fingerprint} vs {other.public_key.fingerprint})"
            )
        if len(other) != len(self):
            raise PaillierError(f"length mismatch: {len(self)} vs {len(other)}")

    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        self._same_key(other)
        nsq = self.public_key.nsquare
        return EncryptedVector(self.public_key, [a * b % nsq for a, b in zip(self.ciphertexts, other.ciphertexts)])

    def neg(self) -> EncryptedVector:
        """``[[-m]]``: one modular inversion per ciphertext."""
        nsq = self.public_key.nsquare
        return EncryptedVector(self.public_key, [gmpy2.invert(c, nsq) for c in self.ciphertexts])

    def __neg__(self) -> EncryptedVector:
        return self.neg()

    def __sub__(self, other: EncryptedVector) -> EncryptedVector:
        self._same_key(other)
        return self + other.neg()

    def _plain_list(self, values: Iterable[int] | np.ndarray | int, what: str) -> list[mpz]:
        if isinstance(values, (int, np.integer)) and not isinstance(values, (bool, np.bool_)):
            return [mpz(int(values))] * len(self)
        ms = _to_mpz_list(values)
        if len(ms) != len(self):
            raise PaillierError(f"length mismatch: {len(self)} ciphertexts, {len(ms)} {what}")
        return ms

    def add_plain(self, plaintexts: Iterable[int] | np.ndarray | int) -> EncryptedVector:
        """``[[m + k]]`` for integer ``k`` (a vector of the same length, or one int for all).

        ``k`` is taken mod ``n`` (so values already reduced into ``[0, n)`` work too).
        """
        ms = self._plain_list(plaintexts, "plaintexts")
        pk = self.public_key
        return EncryptedVector(pk, _apply_obfuscators(ms, self.ciphertexts, pk.n, pk.nsquare))

    def mul_plain(self, scalars: Iterable[int] | np.ndarray | int, *, workers: int | None = None) -> EncryptedVector:
        """``[[m * k]]`` element-wise for integer ``k`` (negative ``k`` uses the inverse)."""
        ks = self._plain_list(scalars, "scalars")
        nsq = self.public_key.nsquare
        w = parallel.resolve_workers(workers, len(ks), "mul_plain")
        if w > 1:
            cts = self.ciphertexts
            parts = parallel.map_processes(
                _task_mul_plain, [(nsq, cts[a:b], ks[a:b]) for a, b in parallel.split(len(ks), w)], w
            )
            if parts is not None:
                return EncryptedVector(self.public_key, [c for part in parts for c in part])
        return EncryptedVector(self.public_key, _mul_plain_chunk(nsq, self.ciphertexts, ks))

    def sum(self) -> EncryptedVector:
        nsq = self.public_key.nsquare
        acc = mpz(1)
        for c in self.ciphertexts:
            acc = acc * c % nsq
        return EncryptedVector(self.public_key, [acc])

    def dot(self, matrix: np.ndarray, *, workers: int | None = None) -> EncryptedVector:
        """``[prod_i c_i^{X_ij}]_j``: encrypted ``X^T m`` for an integer matrix X (rows = len(self)).

        Large inputs are split by rows across worker processes; each returns one partial
        product per column and the parent multiplies them (results are identical).
        """
        X = np.asarray(matrix)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise PaillierError(f"dot needs a 1-D or 2-D integer matrix, got shape {X.shape}")
        if X.shape[0] != len(self):
            raise PaillierError(f"matrix has {X.shape[0]} rows, vector has {len(self)} ciphertexts")
        X = _int64_matrix(X)
        nsq = self.public_key.nsquare
        rows, cols = X.shape
        w = parallel.resolve_workers(workers, rows if cols else 0, "dot")
        if w > 1:
            cts = self.ciphertexts
            parts = parallel.map_processes(_task_dot, [(nsq, cts[a:b], X[a:b]) for a, b in parallel.split(rows, w)], w)
            if parts is not None:
                out = list(parts[0])
                for part in parts[1:]:
                    out = [x * y % nsq for x, y in zip(out, part)]
                return EncryptedVector(self.public_key, out)
        return EncryptedVector(self.public_key, _dot_chunk(nsq, self.ciphertexts, X))

    def rerandomize(self, *, obfuscators: Sequence[mpz] | None = None, workers: int | None = None) -> EncryptedVector:
        """Same plaintexts, fresh randomness (multiply by encryptions of zero)."""
        nsq = self.public_key.nsquare
        obf = obfuscators if obfuscators is not None else self.public_key.random_obfuscators(len(self), workers=workers)
        if len(obf) < len(self):
            raise PaillierError(f"not enough obfuscators: {len(obf)} for {len(self)} ciphertexts")
        return EncryptedVector(self.public_key, [c * r % nsq for c, r in zip(self.ciphertexts, obf)])

    def concat(self, other: EncryptedVector) -> EncryptedVector:
        if not isinstance(other, EncryptedVector) or other.public_key != self.public_key:
            raise PaillierError("cannot concatenate ciphertexts under different public keys")
        return EncryptedVector(self.public_key, self.ciphertexts + other.ciphertexts)

    # -- wire format ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Fixed-width big-endian ciphertexts, concatenated (``ciphertext_bytes`` each)."""
        width = self.public_key.ciphertext_bytes
        return b"".join([_ct_to_bytes(c, width) for c in self.ciphertexts])

    @classmethod
    def from_bytes(cls, public_key: PublicKey, data: bytes, *, validate: bool = True) -> EncryptedVector:
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
        for i, x in enumerate(numbers):
            if not isinstance(x, phe_paillier.EncryptedNumber):
                raise PaillierError(f"item {i} is a {type(x).__name__}, not a phe EncryptedNumber")
            if x.public_key != public_key.phe:
                raise PaillierError(f"phe ciphertext {i} made under a different public key")
            if x.exponent != 0:
                raise PaillierError(f"phe ciphertext {i} carries a float exponent; use raw integer encryptions")
        return cls(public_key, [mpz(x.ciphertext(be_secure=False)) for x in numbers])


# -- kernels (also run inside worker processes) ----------------------------------------------


def _mul_plain_chunk(nsq: mpz, cts: Sequence[mpz], ks: Sequence[mpz]) -> list[mpz]:
    powmod = gmpy2.powmod
    return [powmod(c, k, nsq) for c, k in zip(cts, ks)]  # gmpy2 inverts for k < 0


def _int64_matrix(X: np.ndarray) -> np.ndarray:
    """``X`` as int64 when every entry fits, else as an object array of Python ints (slow path)."""
    if X.dtype.kind == "f":
        raise PaillierError("dot needs an integer matrix; encode floats with protocols.common.encoding")
    if X.dtype.kind == "b":
        return X.astype(np.int64)
    if X.dtype.kind not in "iuO":
        raise PaillierError(f"dot needs an integer matrix, got dtype {X.dtype}")
    e64 = _as_int64(X)
    if e64 is not None:
        return e64
    out = np.empty(X.shape, dtype=object)
    out.ravel()[:] = [int(v) for v in X.ravel().tolist()]
    return out


_INT_TYPES = (int, np.integer, type(mpz(0)))


def _check_int_entries(e: np.ndarray) -> None:
    for i, v in enumerate(e.ravel().tolist()):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, _INT_TYPES):
            where = np.unravel_index(i, e.shape) if e.ndim > 1 else i
            raise PaillierError(f"exponent/matrix entry {where} is a {type(v).__name__}, not an integer")


def _as_int64(e: np.ndarray) -> np.ndarray | None:
    """int64 view of integer exponents when all fit in (-2^63, 2^63), else ``None``."""
    if e.dtype.kind == "b":
        return e.astype(np.int64)
    if e.dtype.kind == "i":
        if e.size and int(e.min()) == np.iinfo(np.int64).min:
            return None  # cannot be negated in int64
        return e.astype(np.int64, copy=False)
    if e.dtype.kind == "u":
        if e.size and int(e.max()) >= 2**63:
            return None
        return e.astype(np.int64)
    if e.dtype == object:
        _check_int_entries(e)
        try:
            out = e.astype(np.int64)
        except (OverflowError, TypeError, ValueError):
            return None
        if out.size and int(out.min()) == np.iinfo(np.int64).min:
            return None
        return out
    return None


def _dot_chunk(nsq: mpz, cts: Sequence[mpz], X: np.ndarray) -> list[mpz]:
    return [multi_exponentiate(cts, X[:, j], nsq) for j in range(X.shape[1])]


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
    e64 = _as_int64(e)
    if e64 is not None:
        pos = _pippenger(bases, np.where(e64 > 0, e64, 0), modulus, window)
        negs = np.where(e64 < 0, -e64, 0)
        if negs.any():
            pos = pos * gmpy2.invert(_pippenger(bases, negs, modulus, window), modulus) % modulus
        return pos
    ints = [int(v) for v in e.tolist()]
    pos = _pippenger_big(bases, [v if v > 0 else 0 for v in ints], modulus, window)
    negs = [-v if v < 0 else 0 for v in ints]
    if any(negs):
        pos = pos * gmpy2.invert(_pippenger_big(bases, negs, modulus, window), modulus) % modulus
    return pos


def _best_window(max_bits: int, n: int) -> int:
    # cost ~ (bits/w) * (N + 2^(w+1)) multiplications; pick the best w for this N
    return min(range(1, 17), key=lambda w: -(-max_bits // w) * (n + (2 << w)))


def _bucket_combine(buckets: list, top: int, modulus: mpz) -> mpz:
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


# -- worker-process tasks (keys arrive as bytes; tables are cached per key) -------------------

_worker_keys: dict[tuple[str, bytes, int, int], PublicKey | PrivateKey] = {}


def _worker_key(kind: str, key_bytes: bytes, exponent_bits: int, window: int) -> PublicKey | PrivateKey:
    cache_key = (kind, key_bytes, exponent_bits, window)
    key = _worker_keys.get(cache_key)
    if key is None:
        if len(_worker_keys) >= 4:
            _worker_keys.clear()
        if kind == "public":
            key = PublicKey.from_bytes(
                key_bytes, insecure_test_key=True, djn_exponent_bits=exponent_bits, table_window=window
            )
        else:
            private = PrivateKey.from_bytes(key_bytes, insecure_test_key=True)
            pub = private.public_key
            pub.djn_exponent_bits, pub.table_window = exponent_bits, window
            key = private
        _worker_keys[cache_key] = key
    return key


def _task_public_obfuscators(key_bytes: bytes, exponent_bits: int, window: int, count: int) -> list[mpz]:
    return _worker_key("public", key_bytes, exponent_bits, window).random_obfuscators(count, workers=1)


def _task_owner_obfuscators(key_bytes: bytes, exponent_bits: int, window: int, count: int) -> list[mpz]:
    return _worker_key("private", key_bytes, exponent_bits, window).random_obfuscators(count, workers=1)


def _task_dot(nsq: mpz, cts: list[mpz], X: np.ndarray) -> list[mpz]:
    return _dot_chunk(nsq, cts, X)


def _task_mul_plain(nsq: mpz, cts: list[mpz], ks: list[mpz]) -> list[mpz]:
    return _mul_plain_chunk(nsq, cts, ks)
