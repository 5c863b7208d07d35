"""Fixed-point encoding and BatchCrypt-style packing: exactness, overflow detection, homomorphic sums."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.common.encoding import EncodingError, FixedPoint
from protocols.paillier import generate_keypair
from protocols.paillier.packing import Packer

FAST = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024, insecure_test_key=True)


# -- FixedPoint -------------------------------------------------------------------------------


@FAST
@given(frac=st.integers(0, 40), int_bits=st.integers(1, 20), data=st.data())
def test_roundtrip_within_half_resolution(frac, int_bits, data):
    fp = FixedPoint(frac, int_bits)
    xs = np.array(data.draw(st.lists(st.floats(-fp.max_abs, fp.max_abs), min_size=1, max_size=20)))
    enc = fp.encode(xs)
    assert enc.dtype == np.int64
    assert np.all(np.abs(enc) <= fp.max_int)
    assert np.all(np.abs(fp.decode(enc) - xs) <= fp.resolution / 2)


@FAST
@given(x=st.floats(-100, 100), y=st.floats(-100, 100))
def test_product_of_encodings_decodes_with_extra_frac_bits(x, y):
    fp = FixedPoint(24, 8)
    ex, ey = fp.encode(np.array([x])), fp.encode(np.array([y]))
    prod = ex.astype(object) * ey.astype(object)
    got = fp.decode(prod, extra_frac_bits=24)[0]
    err = abs(x) * fp.resolution / 2 + abs(y) * fp.resolution / 2 + fp.resolution**2
    assert abs(got - x * y) <= err + 1e-12


def test_wide_formats_use_python_ints_exactly():
    fp = FixedPoint(60, 40)
    enc = fp.encode(np.array([1.5, -2.25, 1e11]))
    assert enc.dtype == object
    assert enc[0] == 3 << 59 and enc[1] == -(9 << 58)
    assert fp.decode(enc).tolist() == [1.5, -2.25, 1e11]


def test_encode_keeps_shape_and_names_matrix_index():
    fp = FixedPoint(8, 4)
    assert fp.encode(np.zeros((3, 2))).shape == (3, 2)
    with pytest.raises(EncodingError, match=r"index \(1, 0\)"):
        fp.encode(np.array([[1.0, 2.0], [100.0, 3.0]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise_with_index(bad):
    with pytest.raises(EncodingError, match="non-finite.*index 2"):
        FixedPoint(16, 8).encode(np.array([0.0, 1.0, bad]))


def test_range_boundary():
    fp = FixedPoint(4, 3)  # max_int = 127, max_abs = 7.9375
    assert fp.max_abs == 7.9375
    assert fp.encode(np.array([fp.max_abs, -fp.max_abs])).tolist() == [127, -127]
    with pytest.raises(EncodingError, match="exceeds the fixed-point range"):
        fp.encode(np.array([8.0]))
    with pytest.raises(EncodingError, match="value -9.0 at index 0"):
        fp.encode([-9.0])


def test_bad_formats_and_inputs():
    with pytest.raises(EncodingError):
        FixedPoint(-1, 4)
    with pytest.raises(EncodingError):
        FixedPoint(0, 0)
    with pytest.raises(EncodingError, match="dtype"):
        FixedPoint(8, 8).encode(np.array(["a"], dtype=object))
    with pytest.raises(EncodingError, match="floats"):
        FixedPoint(8, 8).decode(np.array([1.5]))
    with pytest.raises(EncodingError, match="too large"):
        FixedPoint(0, 8).decode(np.array([1 << 2000], dtype=object))


def test_check_sum_bits():
    fp = FixedPoint(16, 8)
    assert fp.check_sum(1) == 24
    assert fp.check_sum(2) == 25
    assert fp.check_sum(1024) == 34
    assert fp.check_sum(1025) == 35


# -- Packer -----------------------------------------------------------------------------------


@st.composite
def packer_and_values(draw, max_len=40):
    headroom = draw(st.integers(0, 12))
    value_bits = draw(st.integers(2, 70))
    n_slots = draw(st.integers(1, 6))
    p = Packer(value_bits + headroom, n_slots=n_slots, key_bits=1024, headroom_bits=headroom)
    vals = draw(st.lists(st.integers(-p.offset, p.offset - 1), min_size=1, max_size=max_len))
    return p, vals


@FAST
@given(packer_and_values())
def test_pack_unpack_roundtrip(pv):
    p, vals = pv
    pts = p.pack(np.array(vals, dtype=object))
    assert len(pts) == p.n_plaintexts(len(vals))
    assert all(0 <= x < 2**p.plaintext_bits for x in pts)
    assert p.unpack(pts, len(vals)).tolist() == vals


@FAST
@given(packer_and_values(max_len=15), st.data())
def test_sums_of_packed_vectors_up_to_capacity(pv, data):
    p, first = pv
    k = data.draw(st.integers(1, min(p.max_summands, 6)))
    vecs = [first] + [
        data.draw(st.lists(st.integers(-p.offset, p.offset - 1), min_size=len(first), max_size=len(first)))
        for _ in range(k - 1)
    ]
    packed = [p.pack(np.array(v, dtype=object)) for v in vecs]
    summed = [sum(col) for col in zip(*packed)]
    assert p.unpack(summed, len(first), n_summands=k).tolist() == [sum(c) for c in zip(*vecs)]


def test_extreme_sums_at_exact_capacity():
    p = Packer(8, n_slots=3, key_bits=1024, headroom_bits=2)  # value_bits 6, capacity 255 // 63 = 4
    assert p.max_summands == 4
    for v in (-32, 31):
        pts = p.pack(np.full(3, v))
        total = [sum(x) for x in zip(*[pts] * 4)]
        assert p.unpack(total, 3, n_summands=4).tolist() == [4 * v] * 3


def test_overflowing_sums_are_detected():
    p = Packer(8, n_slots=3, key_bits=1024, headroom_bits=2)
    hi = p.pack(np.full(2, 31))  # two values, slot 2 is padding
    five = [sum(x) for x in zip(*[hi] * 5)]
    # declared capacity exceeded
    with pytest.raises(EncodingError, match="overflows"):
        p.unpack(five, 2, n_summands=5)
    # caller under-declares the summands: the carry into the padding slot is caught
    with pytest.raises(EncodingError, match="unused slot 2 is non-zero|exceeds the largest valid sum"):
        p.unpack(five, 2, n_summands=4)
    full = p.pack(np.full(3, 31))
    five_full = [sum(x) for x in zip(*[full] * 5)]
    with pytest.raises(EncodingError, match="outside"):  # carry out of the top slot
        p.unpack(five_full, 3, n_summands=4)
    with pytest.raises(EncodingError, match="outside"):
        p.unpack([-1], 3)
    with pytest.raises(EncodingError, match="slot word"):  # 200 > 3 * 63
        p.unpack([200], 1, n_summands=3)


def test_pack_refuses_out_of_range_and_bad_shapes():
    p = Packer(10, n_slots=4, key_bits=1024, headroom_bits=4)  # values in [-32, 31]
    with pytest.raises(EncodingError, match="value 32 at index 1"):
        p.pack(np.array([0, 32]))
    with pytest.raises(EncodingError, match="index 0"):
        p.pack([-33])
    with pytest.raises(EncodingError, match="1-D"):
        p.pack(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(EncodingError, match="FixedPoint"):
        p.pack(np.array([0.5]))
    with pytest.raises(EncodingError, match="need 1 packed plaintexts"):
        p.unpack([0, 0], 3)


def test_layout_is_offset_binary_little_slot_first():
    p = Packer(8, n_slots=2, key_bits=1024, headroom_bits=2)  # offset 32
    assert p.pack(np.array([1, -2, 5])) == [(33) | (30 << 8), 37]


def test_packer_parameters():
    assert Packer(40).n_slots == 2046 // 40
    with pytest.raises(EncodingError, match="does not fit"):
        Packer(40, n_slots=52)
    with pytest.raises(EncodingError, match="value bits"):
        Packer(4, headroom_bits=3)
    fp = FixedPoint(20, 4)
    p = Packer.for_fixed_point(fp, 30_000)
    assert p.value_bits == 25 and p.max_summands >= 30_000 and p.n_slots == 51
    assert p.aligned(2).n_slots == 50
    enc = fp.encode(np.array([fp.max_abs, -fp.max_abs]))
    assert p.unpack(p.pack(enc), 2).tolist() == enc.tolist()


# -- packing under Paillier ----------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_encrypted_packed_sums(keys, data):
    pk, sk = keys
    p = Packer(30, key_bits=pk.bits, headroom_bits=6)
    n = data.draw(st.integers(1, 80))
    k = data.draw(st.integers(1, 4))
    vecs = [
        np.array(data.draw(st.lists(st.integers(-p.offset, p.offset - 1), min_size=n, max_size=n)), dtype=object)
        for _ in range(k)
    ]
    acc = pk.encrypt(p.pack(vecs[0]))
    for v in vecs[1:]:
        acc = acc + sk.encrypt(p.pack(v))
    assert len(acc) == p.n_plaintexts(n)
    assert p.unpack(sk.decrypt(acc), n, n_summands=k).tolist() == sum(vecs).tolist()


def test_pack_encrypted_and_repack_gh_pairs(keys):
    pk, sk = keys
    rng = np.random.default_rng(3)
    fp = FixedPoint(16, 3)
    p = Packer.for_fixed_point(fp, max_summands=64, key_bits=pk.bits)
    g = fp.encode(rng.uniform(-7, 7, 64))
    h = fp.encode(rng.uniform(0, 1, 64))
    # host-side packing of ciphertexts holding sums of 2 values each
    s = pk.encrypt(g[:32]) + pk.encrypt(g[32:])
    packed = p.pack_encrypted(s, n_summands=2)
    assert len(packed) == p.n_plaintexts(32)
    assert p.unpack(list(sk.decrypt(packed)), 32, 2).tolist() == (g[:32] + g[32:]).tolist()
    # SecureBoost: (g, h) pairs in 2 slots, bins summed by the host, bins repacked on the way back
    pair = Packer(p.slot_bits, n_slots=2, key_bits=pk.bits, headroom_bits=p.headroom_bits)
    gh = pk.encrypt(pair.pack(np.stack([g, h], axis=1).ravel()))
    bins = [gh[list(range(b, 64, 8))].sum() for b in range(8)]  # 8 bins of 8 samples
    vec = bins[0]
    for b in bins[1:]:
        vec = vec.concat(b)
    back = p.aligned(2)
    rep = back.repack_encrypted(vec, slots_per_input=2)
    assert len(rep) == back.n_plaintexts(16)
    got = back.unpack(list(sk.decrypt(rep)), 16, n_summands=8).reshape(8, 2)
    for b in range(8):
        idx = list(range(b, 64, 8))
        assert got[b].tolist() == [g[idx].sum(), h[idx].sum()]
    with pytest.raises(EncodingError, match="multiple"):
        Packer(p.slot_bits, n_slots=3, key_bits=pk.bits, headroom_bits=p.headroom_bits).repack_encrypted(vec, 2)
    with pytest.raises(EncodingError, match="n_summands"):
        p.pack_encrypted(s, n_summands=p.max_summands + 1)


@pytest.mark.parametrize("frac,int_bits", [(37, 17), (40, 20), (30, 30), (10, 5)])
def test_range_edge_is_exact_above_53_bits(frac, int_bits):
    """max_abs itself encodes within max_int; the next float up is refused (found by the
    property above: at 54 bits float(max_int) rounds up to 2**54, one past the range)."""
    fp = FixedPoint(frac, int_bits)
    enc = fp.encode(np.array([fp.max_abs, -fp.max_abs]))
    assert all(abs(int(v)) <= fp.max_int for v in enc)
    with pytest.raises(EncodingError, match="exceeds the fixed-point range"):
        # above 53 bits the next float up is already a whole step past; below, encoding rounds
        # to nearest, so the first refused value is one step up
        beyond = np.nextafter(fp.max_abs, np.inf) if fp.bits > 53 else fp.max_abs + fp.resolution
        fp.encode(np.array([beyond]))
