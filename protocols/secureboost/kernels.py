"""Every piece of SecureBoost's raw ciphertext arithmetic: histograms, packing, signed decoding.

Why a separate module: the parties (``guest.py``, ``host.py``) only decide *which* rows,
nodes and candidates go where; the modular arithmetic on Paillier ciphertexts (products mod
``n^2``, batch inversions, prefix sums, Horner packing, range checks) lives here, next to
:mod:`protocols.paillier`, so it can be reviewed in one place. The kernels run inside
``multiprocessing`` worker processes, so they are top-level functions that touch nothing but
their arguments, take and return fixed-width ciphertext ``bytes`` (cheap to pickle, no
per-object overhead) and never see a party object.
The main process always runs the first task itself while the shared pool of
:mod:`protocols.common.parallel` runs the others, so with 2 cores both are busy.

Cost model (2048-bit key, ciphertexts mod ``n^2`` are 4096 bits): one homomorphic addition
(``a * b % n^2``) ~6 us, one slot shift (``c^(2^w)``, w ~ 93) ~0.45 ms, one CRT decryption
~3 ms, one key-owner CRT encryption ~0.1 ms (encryption and decryption are
:mod:`protocols.paillier`'s own parallel vector operations). The histogram kernel is one tight loop of
additions per (feature, bucket) run of rows sorted by bucket.

Packing layout (:class:`GHLayout`): the guest encrypts per sample one plaintext
``g * 2^hb + h`` (``g``, ``h`` fixed-point ints, ``h >= 0`` in the low ``hb`` bits, ``g``
signed above); any sum over up to ``max_rows`` samples stays inside a ``w``-bit signed slot.
On the way back the host packs ``K = (key_bits - 2) // w`` candidate sums into one
ciphertext by Horner's rule ``((c_{K-1})^(2^w) * c_{K-2})^(2^w) ... * c_0`` so the guest needs
one decryption per ``K`` candidates; slots are decoded as signed base-``2^w`` digits and
checked against their bounds (overflow or a wrong key shows up as an out-of-bound slot).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.common import parallel
from protocols.paillier import PaillierError, PublicKey

ONE = mpz(1)  # the trivial encryption of 0: an empty bucket

Histogram = list[mpz]  # one node's F x B encrypted (packed g|h) bucket sums, row-major


class PackingError(ValueError):
    """A decrypted packed plaintext does not decode into in-bound slots (overflow/wrong key)."""


# -- fixed-width blobs ------------------------------------------------------------------------


def blob_to_mpz(blob: bytes, width: int) -> list[mpz]:
    if len(blob) % width:
        raise PaillierError(f"ciphertext blob of {len(blob)} bytes is not a multiple of {width}")
    fb = mpz.from_bytes
    mv = memoryview(blob)
    return [fb(mv[i : i + width], "big") for i in range(0, len(blob), width)]


def mpz_to_blob(values: Sequence[mpz], width: int) -> bytes:
    return b"".join(v.to_bytes(width, "big") for v in values)


def take_rows(blob: bytes, width: int, rows: np.ndarray) -> bytes:
    """The ciphertexts of ``rows`` (in that order) from a fixed-width blob."""
    arr = np.frombuffer(blob, dtype=np.uint8).reshape(-1, width)
    return arr[np.asarray(rows, dtype=np.int64)].tobytes()


def batch_invert(values: Sequence[mpz], modulus: mpz) -> list[mpz]:
    """Inverses of all ``values`` with one modular inversion (Montgomery's trick, 3 mults each)."""
    if not values:
        return []
    prefix = []
    acc = ONE
    for v in values:
        acc = acc * v % modulus
        prefix.append(acc)
    inv = gmpy2.invert(acc, modulus)
    out = [ONE] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inv * prefix[i - 1] % modulus
        inv = inv * values[i] % modulus
    out[0] = inv
    return out


# -- histogram algebra (host, main process) --------------------------------------------------


def multiply_histograms(parts: Sequence[Histogram], nsq: mpz) -> Histogram:
    """Bucket-wise product of histograms over disjoint row sets: their homomorphic sum."""
    hist = list(parts[0])
    for other in parts[1:]:
        hist = [x if y == ONE else (y if x == ONE else x * y % nsq) for x, y in zip(hist, other)]
    return hist


def recover_skipped_bins(
    hist: Histogram, n_nodes: int, n_bins_max: int, total_feature: np.ndarray, skip: np.ndarray, nsq: mpz
) -> None:
    """Fill in, in place, the bins the row loop skipped: ``total / product of the other bins``.

    ``hist`` holds ``(F, n_nodes, B)`` buckets row-major. Node ``k``'s total is the product of
    all bins of feature ``total_feature[k]`` (summed in full); ``skip[k, f]`` is the skipped
    (fullest) bin of feature ``f`` in node ``k``, or ``-1``. One batch inversion for all.
    """
    B = n_bins_max
    F = skip.shape[1]
    targets: list[tuple[int, mpz]] = []  # (bucket index, node total)
    partial: list[mpz] = []
    for k in range(n_nodes):
        tf = int(total_feature[k])
        total = ONE
        for b in range(B):
            c = hist[(tf * n_nodes + k) * B + b]
            if c != ONE:
                total = total * c % nsq
        for f in range(F):
            sb = int(skip[k, f])
            if sb < 0:
                continue
            acc = ONE
            for b in range(B):
                c = hist[(f * n_nodes + k) * B + b]
                if b != sb and c != ONE:
                    acc = acc * c % nsq
            targets.append(((f * n_nodes + k) * B + sb, total))
            partial.append(acc)
    for (i, total), inv in zip(targets, batch_invert(partial, nsq)):
        hist[i] = total * inv % nsq


def subtract_histograms(parents: Sequence[Histogram], smalls: Sequence[Histogram], nsq: mpz) -> list[Histogram]:
    """``parent - small`` bucket by bucket for each pair (the larger child of a split), one inversion."""
    inverses = iter(batch_invert([c for sm in smalls for c in sm if c != ONE], nsq))
    return [
        [pc if c == ONE else pc * next(inverses) % nsq for pc, c in zip(par, sm)] for par, sm in zip(parents, smalls)
    ]


def candidate_left_sums(
    hist: Histogram, n_bins: np.ndarray, n_bins_max: int, mask: np.ndarray, miss_bin: np.ndarray, nsq: mpz
) -> tuple[list[mpz], list[tuple[int, int, bool]]]:
    """Encrypted left sums of one node's candidates where ``mask[f, d, b]``, and their (f, b, missing left).

    ``mask`` is the grid of :func:`protocols.gbdt.plain.candidate_grid`: ``d = 0`` is "bin <= b"
    (missing right), ``d = 1`` "bin <= b or missing" -- the same prefix product times the
    feature's missing bin ``miss_bin[f]``. Prefix products over each feature's bins, in
    feature then bin order.
    """
    sums: list[mpz] = []
    where: list[tuple[int, int, bool]] = []
    for f in range(len(n_bins)):
        acc = ONE
        m = hist[f * n_bins_max + int(miss_bin[f])] if miss_bin[f] >= 0 else ONE
        for b in range(int(n_bins[f]) - 1):
            c = hist[f * n_bins_max + b]
            if c != ONE:
                acc = acc * c % nsq
            if mask[f, 0, b]:
                sums.append(acc)
                where.append((f, b, False))
            if mask[f, 1, b]:
                sums.append(acc * m % nsq)
                where.append((f, b, True))
    return sums, where


# -- decryption side (guest) ------------------------------------------------------------------


def outside_ciphertext_space(cts: Sequence[mpz], pk: PublicKey) -> bool:
    """True if any value is not in ``(0, n^2)``: not a ciphertext under ``pk`` (wrong key)."""
    nsq = pk.nsquare
    return any(not 0 < c < nsq for c in cts)


def signed_plaintexts(raw: Sequence[mpz], pk: PublicKey) -> list[int]:
    """Raw decryptions in ``[0, n)`` as signed integers (values above ``max_int`` are negative)."""
    n, lim = pk.n, pk.max_int
    return [int(m - n) if m > lim else int(m) for m in raw]


# -- packing layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GHLayout:
    """Where g and h sit in a plaintext and how many candidate sums share one ciphertext.

    Why not :class:`protocols.paillier.packing.Packer`: its offset-binary slots need the number of
    summands to remove the offsets after decryption, and the guest must not learn the host's
    per-candidate row counts. Here ``h >= 0`` needs no offset and ``g`` rides signed above it,
    so any sum decodes without knowing how many rows formed it.
    """

    precision_bits: int
    max_rows: int
    key_bits: int

    @property
    def h_bits(self) -> int:
        # h = p(1-p) <= 1/4, so an H sum is at most max_rows * 2^(P-2)
        return (self.max_rows << max(self.precision_bits - 2, 0)).bit_length()

    @property
    def g_bound(self) -> int:
        return self.max_rows << self.precision_bits  # |G| <= rows * 2^P

    @property
    def h_bound(self) -> int:
        return self.max_rows << max(self.precision_bits - 2, 0)

    @property
    def slot_bits(self) -> int:
        return self.h_bits + (self.g_bound + 1).bit_length() + 1

    @property
    def slots(self) -> int:
        k = (self.key_bits - 2) // self.slot_bits
        if k < 1:
            raise PackingError(f"a {self.slot_bits}-bit slot does not fit a {self.key_bits}-bit key")
        return k

    def encode(self, g: np.ndarray, h: np.ndarray) -> list[int]:
        """Per-sample plaintexts ``g * 2^hb + h`` (Python ints, possibly negative)."""
        if (
            np.any(np.abs(g) > (1 << self.precision_bits))
            or np.any(h < 0)
            or np.any(h > (1 << max(self.precision_bits - 2, 0)))
        ):
            raise PackingError("gradient/hessian out of range for the packing layout")
        hb = self.h_bits
        return [(gi << hb) + hi for gi, hi in zip(g.tolist(), h.tolist())]

    def decode(self, packed: Sequence[int], count: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, H) int64 arrays of the first ``count`` slots of the packed plaintexts, in order."""
        K, w, hb = self.slots, self.slot_bits, self.h_bits
        if len(packed) != -(-count // K):
            raise PackingError(f"{len(packed)} packed plaintexts cannot hold {count} candidates")
        half, mask, hmask = 1 << (w - 1), (1 << w) - 1, (1 << hb) - 1
        gb, hbound = self.g_bound, self.h_bound
        G = np.empty(count, dtype=np.int64)
        H = np.empty(count, dtype=np.int64)
        j = 0
        for x in packed:
            x = int(x)
            for _ in range(min(K, count - j)):
                d = ((x + half) & mask) - half
                x = (x - d) >> w
                hv, gv = d & hmask, d >> hb
                if not (0 <= hv <= hbound and -gb <= gv <= gb):
                    raise PackingError(f"candidate {j} decodes out of bounds: wrong key or corrupted ciphertext")
                G[j], H[j] = gv, hv
                j += 1
            if x != 0:
                raise PackingError(
                    f"packed plaintext ending at candidate {j - 1} has bits beyond its "
                    "slots: wrong key or corrupted ciphertext"
                )
        return G, H


# -- kernels (run in workers) -----------------------------------------------------------------


def histogram_kernel(task: tuple[int, int, bytes, np.ndarray, int]) -> bytes:
    """Per (feature, bucket) products of the rows' ciphertexts.

    ``task = (n_square, width, blob, keys, n_buckets)``: ``blob`` holds the ciphertexts of
    ``m`` rows, ``keys`` is ``(F, m)`` int with each row's bucket per feature (``-1`` = skip).
    Returns ``F * n_buckets`` ciphertexts (row-major), ``1`` (the trivial encryption of 0)
    for empty buckets.
    """
    nsq_int, width, blob, keys, n_buckets = task
    nsq = mpz(nsq_int)
    cts = blob_to_mpz(blob, width)
    F = keys.shape[0]
    out = [ONE] * (F * n_buckets)
    for f in range(F):
        k = keys[f]
        order = np.argsort(k, kind="stable")
        sk = k[order]
        first = int(np.searchsorted(sk, 0, side="left"))
        if first == sk.size:
            continue
        sk = sk[first:]
        ordered = [cts[i] for i in order[first:].tolist()]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]).tolist()
        ends = starts[1:] + [len(ordered)]
        base = f * n_buckets
        for s, e, key in zip(starts, ends, sk[starts].tolist()):
            acc = ordered[s]
            for c in ordered[s + 1 : e]:
                acc = acc * c % nsq
            out[base + key] = acc
    return mpz_to_blob(out, width)


_POWERS: dict[bytes, tuple[PublicKey, list[mpz]]] = {}


def _key_and_powers(key_bytes: bytes) -> tuple[PublicKey, list[mpz]]:
    """The public key and ``hs^(2^i) mod n^2`` for every exponent bit (cached per process).

    A packed ciphertext needs one fresh DJN obfuscator ``hs^a``; a level sends only tens of
    them, so ~``bits/2`` multiplications each beat building :mod:`protocols.paillier`'s
    windowed table (~1 s at 2048 bits) in every process and step.
    """
    h = hashlib.sha256(key_bytes).digest()
    if h not in _POWERS:
        _POWERS.clear()
        # the party validated the key size before handing the key to a kernel
        pk = PublicKey.from_bytes(key_bytes, insecure_test_key=True)
        nsq = pk.nsquare
        powers = [pk.hs % nsq]
        for _ in range(pk.djn_exponent_bits - 1):
            powers.append(powers[-1] * powers[-1] % nsq)
        _POWERS[h] = (pk, powers)
    return _POWERS[h]


def fresh_obfuscators(key_bytes: bytes, count: int) -> list[mpz]:
    """``count`` fresh DJN obfuscators ``hs^a`` (``a`` from the OS CSPRNG) for re-randomisation."""
    pk, powers = _key_and_powers(key_bytes)
    nsq = pk.nsquare
    out = []
    for _ in range(count):
        a = secrets.randbits(len(powers))
        acc = ONE
        for i, pw in enumerate(powers):
            if (a >> i) & 1:
                acc = acc * pw % nsq
        out.append(acc)
    return out


def pack_kernel(task: tuple[bytes, bytes, int, int]) -> bytes:
    """Horner-pack groups of ``slots`` ciphertexts, shifting by ``slot_bits``; re-randomise each.

    ``task = (public_key_bytes, blob, slots, slot_bits)``. Re-randomisation (times a fresh
    encryption of 0) makes every packed ciphertext independent of the guest's per-sample
    randomness, so the guest learns the decrypted sums and nothing about which rows formed them.
    """
    key_bytes, blob, slots, slot_bits = task
    pk, _ = _key_and_powers(key_bytes)
    nsq = pk.nsquare
    width = pk.ciphertext_bytes
    cts = blob_to_mpz(blob, width)
    shift = mpz(1) << slot_bits
    groups = [cts[i : i + slots] for i in range(0, len(cts), slots)]
    obf = fresh_obfuscators(key_bytes, len(groups))
    out = []
    for grp, r in zip(groups, obf):
        acc = grp[-1]
        for c in reversed(grp[:-1]):
            acc = gmpy2.powmod(acc, shift, nsq) * c % nsq
        out.append(acc * r % nsq)
    return mpz_to_blob(out, width)


# -- worker processes -------------------------------------------------------------------------


def resolve_workers(n_workers: int) -> int:
    """``0`` means the process-wide default of :mod:`protocols.common.parallel` (all cores)."""
    return n_workers if n_workers > 0 else parallel.default_workers()


def run_tasks(func: Callable[[Any], Any], tasks: list[Any], n_workers: int) -> list[Any]:
    """``[func(t) for t in tasks]``: the first in this process, the rest in the shared pool.

    The pool is :mod:`protocols.common.parallel`'s (one per node process, shared with the Paillier
    vector operations, forkserver start method); without one, everything runs here.
    """
    if n_workers <= 1 or len(tasks) <= 1:
        return [func(t) for t in tasks]
    pool = parallel.process_pool(n_workers)
    if pool is None:
        return [func(t) for t in tasks]
    pending = [pool.submit(func, t) for t in tasks[1:]]
    first = func(tasks[0])
    return [first] + [p.result() for p in pending]


def split_evenly(n: int, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous, near-equal (start, stop) ranges covering ``range(n)``."""
    return parallel.split(n, parts) if n > 0 else []
