"""BatchCrypt-style packing: several signed integers per Paillier plaintext, with headroom for sums.

Why: a 2048-bit plaintext carrying one 40-bit value wastes ~98% of every encryption,
decryption and ciphertext byte. Packing ``n_slots`` values per plaintext divides all three by
``n_slots``; packed ciphertexts still add homomorphically, slot by slot, as long as no slot
carries into its neighbour — which is what the headroom bits and the overflow checks ensure.

Slot layout (exact)::

    value_bits = slot_bits - headroom_bits       # signed range of ONE input value
    offset     = 2**(value_bits - 1)
    input v    : -offset <= v <= offset - 1
    slot word  : u = v + offset                   # offset binary, 0 <= u < 2**value_bits
    plaintext  : P = sum_j u_j * 2**(j * slot_bits),  j = 0 .. n_slots-1
                 (value i lives in plaintext i // n_slots, slot j = i % n_slots, slot 0 = least
                  significant bits; unused slots of the last plaintext are 0, without offset)

Adding ``k`` packed plaintexts gives slot words ``s_j = sum u_j`` with
``0 <= s_j <= k * (2**value_bits - 1) < 2**slot_bits`` whenever ``k <= max_summands``
(``>= 2**headroom_bits``), so slots never carry; the sum of the ``v`` is ``s_j - k * offset``.
``P < 2**(n_slots * slot_bits) <= 2**(key_bits - 2) < n / 2``, so it also decrypts as a
non-negative integer with the signed decryption of :mod:`protocols.paillier.private`.

Overflow detection on :meth:`Packer.unpack`: (1) ``n_summands > max_summands`` is refused up
front (the static capacity), (2) a negative plaintext or one at or above
``2**(n_slots * slot_bits)`` means the top slot carried out, (3) a slot word above
``k * (2**value_bits - 1)`` cannot be a valid sum, (4) non-zero unused slots mean a carry into
the padding. Together with the range check in :meth:`Packer.pack` this turns every sum that
exceeds its declared capacity into an :class:`~protocols.common.encoding.EncodingError`.

Only additions (and adding packed encryptions of zero) are slot-safe; multiplying a packed
ciphertext by a scalar scales the offsets too and is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.common.encoding import EncodingError, FixedPoint
from protocols.paillier.public import EncryptedVector

__all__ = ["Packer"]


@dataclass(frozen=True)
class Packer:
    """Packs signed integers into ``n_slots`` slots of ``slot_bits`` bits per plaintext.

    ``n_slots=None`` takes as many slots as fit a ``key_bits`` key below ``n / 2``.
    """

    slot_bits: int
    n_slots: int | None = None
    key_bits: int = 2048
    headroom_bits: int = 16
    value_bits: int = field(init=False)
    offset: int = field(init=False)
    max_summands: int = field(init=False)

    def __post_init__(self) -> None:
        if self.headroom_bits < 0:
            raise EncodingError(f"headroom_bits must be >= 0, got {self.headroom_bits}")
        value_bits = self.slot_bits - self.headroom_bits
        if value_bits < 2:
            raise EncodingError(
                f"slot_bits={self.slot_bits} leaves {value_bits} value bits after "
                f"headroom_bits={self.headroom_bits}; need >= 2"
            )
        capacity = (self.key_bits - 2) // self.slot_bits
        if capacity < 1:
            raise EncodingError(f"a {self.slot_bits}-bit slot does not fit a {self.key_bits}-bit key")
        n_slots = capacity if self.n_slots is None else self.n_slots
        if not 1 <= n_slots <= capacity:
            raise EncodingError(
                f"n_slots={n_slots} does not fit: a {self.key_bits}-bit key holds at most "
                f"{capacity} slots of {self.slot_bits} bits"
            )
        object.__setattr__(self, "n_slots", n_slots)
        object.__setattr__(self, "value_bits", value_bits)
        object.__setattr__(self, "offset", 1 << (value_bits - 1))
        # largest k with k * (2**value_bits - 1) < 2**slot_bits
        object.__setattr__(self, "max_summands", ((1 << self.slot_bits) - 1) // ((1 << value_bits) - 1))

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def for_fixed_point(
        cls, fp: FixedPoint, max_summands: int, *, key_bits: int = 2048, n_slots: int | None = None, extra_bits: int = 0
    ) -> Packer:
        """Slots wide enough for sums of ``max_summands`` values encoded with ``fp``.

        ``extra_bits`` widens each value, e.g. for statistical masks added before packing.
        """
        if max_summands < 1:
            raise EncodingError(f"max_summands must be >= 1, got {max_summands}")
        value_bits = fp.bits + 1 + extra_bits  # sign bit
        headroom = (max_summands - 1).bit_length()
        return cls(value_bits + headroom, n_slots=n_slots, key_bits=key_bits, headroom_bits=headroom)

    def aligned(self, multiple: int) -> Packer:
        """The same slots with ``n_slots`` rounded down to a multiple (for :meth:`repack_encrypted`)."""
        n = self._slots // multiple * multiple
        if n < 1:
            raise EncodingError(f"cannot fit {multiple} slots of {self.slot_bits} bits in a {self.key_bits}-bit key")
        return Packer(self.slot_bits, n_slots=n, key_bits=self.key_bits, headroom_bits=self.headroom_bits)

    # -- layout ---------------------------------------------------------------------------
    @property
    def _slots(self) -> int:
        """``n_slots`` as resolved by ``__post_init__`` (never ``None`` after construction)."""
        if self.n_slots is None:  # pragma: no cover - __post_init__ always resolves it
            raise EncodingError("Packer.n_slots was not resolved")
        return self.n_slots

    @property
    def plaintext_bits(self) -> int:
        return self._slots * self.slot_bits

    def n_plaintexts(self, n_values: int) -> int:
        return -(-n_values // self._slots)

    # -- plaintext packing ----------------------------------------------------------------
    def pack(self, ints: np.ndarray | list) -> list[int]:
        """Signed integers (1-D; each within ``[-offset, offset - 1]``) -> packed plaintexts."""
        arr = np.asarray(ints)
        if arr.ndim != 1:
            raise EncodingError(f"pack expects a 1-D vector, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            raise EncodingError("pack expects integers; encode floats with FixedPoint first")
        if arr.dtype.kind not in "iuO":
            raise EncodingError(f"pack expects integers, got dtype {arr.dtype}")
        values = [int(v) for v in arr.tolist()]
        lo, hi, off = -self.offset, self.offset - 1, self.offset
        if arr.dtype.kind in "iu" and arr.size:
            a_min, a_max = int(arr.min()), int(arr.max())
            check = a_min < lo or a_max > hi
        else:
            check = True
        if check:
            for i, v in enumerate(values):
                if v < lo or v > hi:
                    raise EncodingError(
                        f"value {v} at index {i} does not fit a {self.value_bits}-bit signed "
                        f"slot value ([{lo}, {hi}]; slot_bits={self.slot_bits}, "
                        f"headroom_bits={self.headroom_bits})"
                    )
        s, k = self.slot_bits, self._slots
        out = []
        for start in range(0, len(values), k):
            p = mpz(0)
            for v in reversed(values[start : start + k]):
                p = (p << s) | (v + off)
            out.append(int(p))
        return out

    def unpack(self, plaintexts: np.ndarray | list, n_values: int, n_summands: int = 1) -> np.ndarray:
        """Packed plaintexts (sums of ``n_summands`` packed vectors) -> signed sums, int64 or object.

        Raises :class:`EncodingError` on any sign of slot overflow (see the module docstring).
        """
        if n_summands < 1:
            raise EncodingError(f"n_summands must be >= 1, got {n_summands}")
        if n_summands > self.max_summands:
            raise EncodingError(
                f"sum of {n_summands} packed vectors overflows {self.slot_bits}-bit slots: "
                f"capacity is {self.max_summands} (headroom_bits={self.headroom_bits})"
            )
        pts = list(np.asarray(plaintexts, dtype=object).ravel()) if not isinstance(plaintexts, list) else plaintexts
        expected = self.n_plaintexts(n_values)
        if len(pts) != expected:
            raise EncodingError(f"{n_values} values need {expected} packed plaintexts, got {len(pts)}")
        s, k = self.slot_bits, self._slots
        mask = mpz((1 << s) - 1)
        top = mpz(1) << self.plaintext_bits
        bias = n_summands * self.offset
        max_word = n_summands * ((1 << self.value_bits) - 1)
        out: list[int] = []
        for t, p in enumerate(pts):
            p = mpz(int(p))
            if p < 0 or p >= top:
                raise EncodingError(
                    f"packed plaintext {t} is outside [0, 2**{self.plaintext_bits}): "
                    "a slot sum overflowed (too many summands or out-of-range values)"
                )
            used = min(k, n_values - t * k)
            for j in range(k):
                word = int(p & mask)
                p >>= s
                if j >= used:
                    if word:
                        raise EncodingError(
                            f"packed plaintext {t}: unused slot {j} is non-zero (carry from an overflowed slot)"
                        )
                    continue
                if word > max_word:
                    raise EncodingError(
                        f"value {t * k + j} (plaintext {t}, slot {j}): slot word {word} exceeds "
                        f"the largest valid sum of {n_summands} values: overflow"
                    )
                out.append(word - bias)
        limit = n_summands * self.offset
        if limit.bit_length() <= 62:
            return np.array(out, dtype=np.int64)
        return np.array(out, dtype=object)

    # -- homomorphic packing of ciphertexts ------------------------------------------------
    def pack_encrypted(self, vec: EncryptedVector, n_summands: int = 1) -> EncryptedVector:
        """Pack a vector of ciphertexts of plain signed integers into ``ceil(len / n_slots)`` ciphertexts.

        Each input ciphertext must hold a sum of at most ``n_summands`` values within the slot
        value range (``|w| <= n_summands * offset``); the offset ``n_summands * offset`` is added
        homomorphically, then each group is combined by Horner's rule
        ``c_0 * (c_1 * (...)^(2^s))^(2^s)`` — about one full exponentiation per *output*
        ciphertext. Unpack the decryption with ``unpack(pts, len(vec), n_summands)``.
        The caller must ensure the range (e.g. masks bounded by the slot); the unpack checks
        catch violations that carry across slots. The result is not ``fresh`` (Horner's rule is
        a deterministic function of the inputs), so its ``to_bytes()`` re-randomises it.
        """
        if n_summands < 1 or n_summands > self.max_summands:
            raise EncodingError(f"n_summands={n_summands} outside [1, {self.max_summands}]")
        shifted = vec.add_plain(np.full(len(vec), n_summands * self.offset, dtype=object))
        return self._horner(shifted, self._slots, self.slot_bits)

    def repack_encrypted(self, vec: EncryptedVector, slots_per_input: int) -> EncryptedVector:
        """Combine ciphertexts that are already packed with this slot layout (``slots_per_input``
        slots each, e.g. 2 for SecureBoost (g, h) pairs summed into histogram bins) into fuller ones.

        ``n_slots`` must be a multiple of ``slots_per_input`` (see :meth:`aligned`); unpack with
        ``unpack(pts, len(vec) * slots_per_input, n_summands)``.
        """
        if slots_per_input < 1 or self._slots % slots_per_input:
            raise EncodingError(
                f"n_slots={self.n_slots} is not a multiple of slots_per_input={slots_per_input}; "
                "use Packer.aligned(slots_per_input)"
            )
        return self._horner(vec, self._slots // slots_per_input, self.slot_bits * slots_per_input)

    @staticmethod
    def _horner(vec: EncryptedVector, group: int, shift_bits: int) -> EncryptedVector:
        nsq = vec.public_key.nsquare
        factor = mpz(1) << shift_bits
        cts = vec.ciphertexts
        out = []
        for start in range(0, len(cts), group):
            chunk = cts[start : start + group]
            acc = chunk[-1]
            for c in reversed(chunk[:-1]):
                acc = gmpy2.powmod(acc, factor, nsq) * c % nsq
            out.append(acc)
        return EncryptedVector(vec.public_key, out)
