"""Paillier: homomorphic correctness (hypothesis), phe interop both ways, secure-by-default wire
format (the ``fresh`` flag), bad input, parallel paths."""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier as phe_paillier

from protocols.common import parallel
from protocols.common.encoding import FixedPoint
from protocols.paillier import (
    MIN_KEY_BITS,
    EncryptedVector,
    ObfuscatorPool,
    PaillierError,
    PrivateKey,
    PublicKey,
    generate_keypair,
    multi_exponentiate,
)
from protocols.paillier.packing import Packer

FAST = settings(max_examples=25, deadline=None)
BIG = 2**400  # plaintext magnitudes tested (the 1024-bit key holds |m| < ~2^1022)


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(1024, insecure_test_key=True)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair(1024, insecure_test_key=True)


def ints(bound: int = BIG, min_size: int = 1, max_size: int = 12):
    return st.lists(st.integers(-bound, bound), min_size=min_size, max_size=max_size)


def obj(xs) -> np.ndarray:
    return np.array(xs, dtype=object)


# -- keys ---------------------------------------------------------------------------------------


def test_default_keys_are_2048_bits_and_work():
    pk, sk = generate_keypair()
    assert pk.bits == MIN_KEY_BITS and not pk.insecure_test_key
    assert pk.table_window == 12 and pk.djn_exponent_bits >= 256
    v = sk.encrypt(np.array([-5, 0, 2**60]))
    assert sk.decrypt(v + pk.encrypt(np.array([1, 2, 3]))).tolist() == [-4, 2, 2**60 + 3]


def test_small_keys_refused_without_flag():
    with pytest.raises(PaillierError, match="at least 2048"):
        generate_keypair(1024)
    phe_pk, phe_sk = phe_paillier.generate_paillier_keypair(n_length=1024)
    with pytest.raises(PaillierError, match="refusing a 1024-bit key"):
        PublicKey(phe_pk)
    with pytest.raises(PaillierError, match="refusing"):
        PrivateKey.from_phe(phe_sk)
    wire = PublicKey(phe_pk, insecure_test_key=True).to_bytes()
    with pytest.raises(PaillierError, match="refusing"):
        PublicKey.from_bytes(wire)
    assert PublicKey.from_bytes(wire, insecure_test_key=True).n == phe_pk.n
    with pytest.raises(PaillierError, match="DJN exponent"):
        PublicKey(phe_paillier.generate_paillier_keypair(n_length=2048)[0], djn_exponent_bits=128)


def test_key_serialisation_roundtrip(keys):
    pk, sk = keys
    pk2 = PublicKey.from_bytes(pk.to_bytes(), insecure_test_key=True)
    assert pk2 == pk and pk2.hs == pk.hs and pk2.fingerprint == pk.fingerprint
    sk2 = PrivateKey.from_bytes(sk.to_bytes(), insecure_test_key=True)
    assert (sk2.p, sk2.q) == (sk.p, sk.q)
    assert sk2.decrypt(pk2.encrypt(np.array([-7, 9]))).tolist() == [-7, 9]


def test_bad_key_bytes(keys):
    pk, sk = keys
    data = pk.to_bytes()
    for bad in (b"", data[:3], data[:40], data[:-1]):
        with pytest.raises(PaillierError):
            PublicKey.from_bytes(bad, insecure_test_key=True)
    nb = int.from_bytes(data[:4], "big")
    even = data[:4] + (int.from_bytes(data[4 : 4 + nb], "big") - 1).to_bytes(nb, "big") + data[4 + nb :]
    with pytest.raises(PaillierError, match="odd modulus"):
        PublicKey.from_bytes(even, insecure_test_key=True)
    zero_hs = data[: 4 + nb] + bytes(len(data) - 4 - nb)
    with pytest.raises(PaillierError, match="DJN base"):
        PublicKey.from_bytes(zero_hs, insecure_test_key=True)
    with pytest.raises(PaillierError, match="truncated"):
        PrivateKey.from_bytes(sk.to_bytes()[:50], insecure_test_key=True)
    with pytest.raises(PaillierError, match="do not match"):
        PrivateKey(pk, sk.p, sk.q + 2)


# -- homomorphic correctness --------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_add_sub_add_plain(keys, data):
    pk, sk = keys
    a = data.draw(ints())
    b = data.draw(ints(min_size=len(a), max_size=len(a)))
    ea, eb = sk.encrypt(obj(a)), pk.encrypt(b)
    assert sk.decrypt(ea + eb).tolist() == [x + y for x, y in zip(a, b)]
    assert sk.decrypt(ea - eb).tolist() == [x - y for x, y in zip(a, b)]
    assert sk.decrypt(-ea).tolist() == [-x for x in a]
    assert sk.decrypt(ea.add_plain(obj(b))).tolist() == [x + y for x, y in zip(a, b)]
    assert sk.decrypt(ea.add_plain(-3)).tolist() == [x - 3 for x in a]
    assert sk.decrypt(ea.add_plain(int(pk.n) - 3)).tolist() == [x - 3 for x in a]  # taken mod n


@FAST
@given(data=st.data())
def test_mul_plain_and_sum(keys, data):
    pk, sk = keys
    a = data.draw(ints(2**300))
    k = data.draw(ints(2**200, min_size=len(a), max_size=len(a)))
    ea = pk.encrypt(obj(a))
    assert sk.decrypt(ea.mul_plain(obj(k))).tolist() == [x * y for x, y in zip(a, k)]
    assert sk.decrypt(ea.mul_plain(-2)).tolist() == [-2 * x for x in a]
    assert sk.decrypt(ea.sum()).tolist() == [sum(a)]


@FAST
@given(data=st.data())
def test_dot_matches_integer_matrix_product(keys, data):
    pk, sk = keys
    n = data.draw(st.integers(1, 40))
    cols = data.draw(st.integers(1, 4))
    bits = data.draw(st.sampled_from([1, 2, 8, 16, 31, 62]))
    a = data.draw(ints(2**300, min_size=n, max_size=n))
    X = np.array(
        data.draw(st.lists(st.integers(-(2**bits) + 1, 2**bits - 1), min_size=n * cols, max_size=n * cols)),
        dtype=np.int64,
    ).reshape(n, cols)
    got = sk.decrypt(pk.encrypt(obj(a)).dot(X))
    assert got.tolist() == (X.T.astype(object) @ obj(a)).tolist()


@FAST
@given(bits=st.sampled_from([1, 20, 63, 64, 100]), data=st.data(), window=st.integers(1, 10))
def test_multi_exponentiate_windows(keys, bits, data, window):
    pk, _ = keys
    exps = data.draw(st.lists(st.integers(-(2**bits), 2**bits), min_size=1, max_size=30))
    nsq = pk.nsquare
    bases = pk.random_obfuscators(len(exps))
    want = mpz(1)
    for b, e in zip(bases, exps):
        want = want * gmpy2.powmod(b, e, nsq) % nsq
    arr = np.array(exps, dtype=object)
    assert multi_exponentiate(bases, arr, nsq, window=window) == want
    assert multi_exponentiate(bases, arr, nsq) == want


def test_dot_edge_cases(keys):
    pk, sk = keys
    e = pk.encrypt(np.array([3, -4, 5]))
    assert sk.decrypt(e.dot(np.zeros((3, 2), dtype=np.int64))).tolist() == [0, 0]
    assert sk.decrypt(e.dot(np.array([1, 1, 1]))).tolist() == [4]
    assert sk.decrypt(e.dot(np.array([[True], [False], [True]]))).tolist() == [8]
    assert sk.decrypt(e.dot(np.array([[2], [3], [-1]], dtype=object))).tolist() == [-11]
    assert len(e.dot(np.zeros((3, 0), dtype=np.int64))) == 0
    # exponents beyond int64 take the generic path
    big = np.array([[2**70, -(2**63)], [-(2**90), 1], [1, 2**64]], dtype=object)
    assert sk.decrypt(e.dot(big)).tolist() == (big.T @ np.array([3, -4, 5], dtype=object)).tolist()
    assert sk.decrypt(e.dot(np.array([[2**63], [0], [1]], dtype=np.uint64))).tolist() == [3 * 2**63 + 5]


def test_fixed_point_through_paillier(keys):
    pk, sk = keys
    fp = FixedPoint(24, 8)
    x = np.array([1.25, -3.5, 0.001, -200.0])
    w = np.array([0.5, 2.0, -1.0, 0.25])
    enc = pk.encrypt(fp.encode(x))
    got = fp.decode(sk.decrypt(enc.dot(fp.encode(w)[:, None])), extra_frac_bits=24)
    assert abs(got[0] - float(x @ w)) < 1e-5


@FAST
@given(a=ints())
def test_rerandomised_ciphertexts_differ_but_decrypt_equal(keys, a):
    pk, sk = keys
    e = pk.encrypt(obj(a))
    r = e.rerandomize()
    assert all(x != y for x, y in zip(e.ciphertexts, r.ciphertexts))
    assert sk.decrypt(r).tolist() == a
    e2 = pk.encrypt(obj(a))
    assert all(x != y for x, y in zip(e.ciphertexts, e2.ciphertexts))


def test_slicing_indexing_concat(keys):
    pk, sk = keys
    e = pk.encrypt(np.arange(6))
    assert sk.decrypt(e[1:3]).tolist() == [1, 2]
    assert sk.decrypt(e[[5, 0]]).tolist() == [5, 0]
    assert sk.decrypt(e[np.array([True, False] * 3)]).tolist() == [0, 2, 4]
    assert sk.decrypt(e[4]).tolist() == [4]
    assert sk.decrypt(e[:2].concat(e[4:])).tolist() == [0, 1, 4, 5]
    with pytest.raises(PaillierError, match="out of range"):
        e[[9]]


# -- wire ---------------------------------------------------------------------------------------


@FAST
@given(a=ints(max_size=20))
def test_ciphertext_bytes_roundtrip(keys, a):
    pk, sk = keys
    e = pk.encrypt(obj(a))
    blob = e.to_bytes()
    assert len(blob) == len(a) * pk.ciphertext_bytes
    back = EncryptedVector.from_bytes(pk, blob)
    assert back.ciphertexts == e.ciphertexts
    assert sk.decrypt(back).tolist() == a


def test_from_bytes_rejects_values_outside_z_star(keys):
    pk, sk = keys
    w = pk.ciphertext_bytes
    good = pk.encrypt(np.array([1, 2, 3])).to_bytes()
    cases = {
        "outside": [mpz(0), pk.nsquare, pk.nsquare + 5],
        "not invertible": [sk.p * 12345, sk.q, pk.n],
    }
    checked = 0
    for msg, values in cases.items():
        for v in values:
            if int(v).bit_length() > 8 * w:
                continue  # cannot even be framed in a fixed-width slot
            blob = good[:w] + int(v).to_bytes(w, "big") + good[2 * w :]
            with pytest.raises(PaillierError, match=f"ciphertext 1 .*{msg}"):
                EncryptedVector.from_bytes(pk, blob)
            checked += 1
    assert checked >= 5
    # the unvalidated path accepts it (for trusted local storage) but validate() still catches it
    blob = good[:w] + (int(sk.p) * 3).to_bytes(w, "big") + good[2 * w :]
    vec = EncryptedVector.from_bytes(pk, blob, validate=False)
    with pytest.raises(PaillierError, match="ciphertext 1"):
        vec.validate()
    with pytest.raises(PaillierError, match="not a multiple"):
        EncryptedVector.from_bytes(pk, good[:-1])


# -- secure by default on the wire: the fresh flag ------------------------------------------------


def raw_bytes(vec: EncryptedVector) -> bytes:
    """The ciphertexts exactly as they are, serialised independently of ``to_bytes``."""
    w = vec.public_key.ciphertext_bytes
    return b"".join(int(c).to_bytes(w, "big") for c in vec.ciphertexts)


def test_encryptions_and_rerandomize_are_fresh(keys):
    pk, sk = keys
    pool = ObfuscatorPool(sk, 3)
    made = {
        "public": pk.encrypt(np.array([1, 2, 3])),
        "owner": sk.encrypt(np.array([1, 2, 3])),
        "given obfuscators": pk.encrypt(np.array([1, 2, 3]), obfuscators=pk.random_obfuscators(3)),
        "pool": pool.encrypt(np.array([1, 2, 3])),
        "zero": pk.encrypt_zero(3),
        "rerandomized": EncryptedVector(pk, pk.encrypt(np.array([1, 2, 3])).ciphertexts).rerandomize(),
    }
    for what, vec in made.items():
        assert vec.fresh, what


def test_fresh_flag_rules(keys):
    pk, sk = keys
    f = pk.encrypt(np.array([1, 2, 3]))
    d = f.mul_plain(2)  # deterministic in f: not fresh
    assert f.fresh and not d.fresh
    # a + b and a - b: fresh if either side is
    assert (f + d).fresh and (d + f).fresh and (f + f).fresh and not (d + d).fresh
    assert (d - f).fresh and (f - d).fresh and not (d - d).fresh
    # neg, add_plain, indexing, sum keep the flag either way
    for v in (f, d):
        kept = [-v, v.neg(), v.add_plain(5), v.add_plain(np.array([1, 2, 3])), v[1:], v[0], v[[2, 0]]]
        kept += [v[np.array([True, False, True])], v.sum()]
        assert all(x.fresh == v.fresh for x in kept)
    # mul_plain, dot, raw ciphertexts, from_bytes, from_phe: not fresh even from a fresh input
    assert not f.mul_plain(np.array([1, 1, 1])).fresh
    assert not f.dot(np.ones((3, 2), dtype=np.int64)).fresh
    assert not EncryptedVector(pk, f.ciphertexts).fresh
    assert not EncryptedVector.from_bytes(pk, f.to_bytes()).fresh
    assert not EncryptedVector.from_phe(pk, f.to_phe()).fresh
    # concat: fresh only if both parts are
    assert f.concat(f).fresh and not f.concat(d).fresh and not d.concat(f).fresh
    # packing combines ciphertexts deterministically (Horner's rule)
    assert not Packer(16, key_bits=pk.bits, headroom_bits=2).pack_encrypted(f).fresh
    assert sk.decrypt((d + f)[1:]).tolist() == [6, 9]


def test_to_bytes_rerandomises_a_vector_that_is_not_fresh(keys):
    pk, sk = keys
    d = pk.encrypt(np.array([5, -6, 7])).mul_plain(3)
    deterministic = raw_bytes(d)
    assert d.to_bytes(be_secure=False) == deterministic  # the explicit opt-out
    secure = d.to_bytes()
    again = d.to_bytes()
    w = pk.ciphertext_bytes
    assert len(secure) == len(deterministic)
    for blob in (secure, again):
        assert all(blob[i : i + w] != deterministic[i : i + w] for i in range(0, len(blob), w))
        assert sk.decrypt(EncryptedVector.from_bytes(pk, blob)).tolist() == [15, -18, 21]
    assert secure != again  # fresh randomness on every call
    assert raw_bytes(d) == deterministic and not d.fresh  # the vector itself is unchanged


def test_to_bytes_does_not_rerandomise_a_fresh_vector(keys, monkeypatch):
    pk, _ = keys
    f = pk.encrypt(np.array([1, 2, 3, 4]))
    d = f.mul_plain(2)
    drawn: list[int] = []
    original = PublicKey.random_obfuscators

    def counting(self, count, *, workers=None):
        drawn.append(count)
        return original(self, count, workers=workers)

    monkeypatch.setattr(PublicKey, "random_obfuscators", counting)
    assert f.to_bytes() == raw_bytes(f) and drawn == []  # fresh: serialised as is, no obfuscator drawn
    assert (d + f).to_bytes() == raw_bytes(d + f) and drawn == []
    assert d.to_bytes(be_secure=False) == raw_bytes(d) and drawn == []
    d.to_bytes()
    assert drawn == [4]  # not fresh: one obfuscator per ciphertext


# -- interop with phe -------------------------------------------------------------------------------


@FAST
@given(a=ints())
def test_phe_decrypts_ours(keys, a):
    pk, sk = keys
    phe_sk = sk.to_phe()
    for e in (pk.encrypt(obj(a)), sk.encrypt(obj(a))):
        got = [phe_sk.raw_decrypt(int(c)) for c in e.ciphertexts]
        assert got == [x % int(pk.n) for x in a]
        # phe's high-level API on our ciphertexts (exponent 0 = integers)
        assert [phe_sk.decrypt(x) for x in e.to_phe()] == a


@FAST
@given(a=ints())
def test_ours_decrypts_phe(keys, a):
    pk, sk = keys
    raw = [mpz(pk.phe.raw_encrypt(x % int(pk.n))) for x in a]
    assert sk.decrypt(EncryptedVector(pk, raw)).tolist() == a
    nums = [pk.phe.encrypt(x) for x in a]  # phe's EncryptedNumber of Python ints: exponent 0
    vec = EncryptedVector.from_phe(pk, nums)
    assert sk.decrypt(vec + vec).tolist() == [2 * x for x in a]
    assert PrivateKey.from_phe(sk.to_phe(), insecure_test_key=True).decrypt(vec).tolist() == a


def test_phe_foreign_inputs_rejected(keys, other_keys):
    pk, _ = keys
    with pytest.raises(PaillierError, match="different public key"):
        EncryptedVector.from_phe(pk, [other_keys[0].phe.encrypt(3)])
    with pytest.raises(PaillierError, match="float exponent"):
        EncryptedVector.from_phe(pk, [pk.phe.encrypt(0.5)])
    with pytest.raises(PaillierError, match="not a phe EncryptedNumber"):
        EncryptedVector.from_phe(pk, [3])
    with pytest.raises(PaillierError, match="phe PaillierPublicKey"):
        PublicKey("not a key")


# -- bad input --------------------------------------------------------------------------------------


def test_mismatched_keys(keys, other_keys):
    pk, sk = keys
    pk2, sk2 = other_keys
    a, b = pk.encrypt(np.array([1, 2])), pk2.encrypt(np.array([1, 2]))
    with pytest.raises(PaillierError, match="different public keys"):
        a + b
    with pytest.raises(PaillierError, match="different public keys"):
        a - b
    with pytest.raises(PaillierError, match="different public key"):
        sk2.decrypt(a)
    with pytest.raises(PaillierError, match="different public keys"):
        a.concat(b)
    with pytest.raises(PaillierError, match="do not match"):
        PrivateKey(pk, sk2.p, sk2.q)


def test_wrong_shapes_and_types(keys):
    pk, sk = keys
    e = pk.encrypt(np.array([1, 2, 3]))
    with pytest.raises(PaillierError, match="length mismatch"):
        e + pk.encrypt(np.array([1, 2]))
    with pytest.raises(PaillierError, match="length mismatch"):
        e.add_plain(np.array([1, 2]))
    with pytest.raises(PaillierError, match="length mismatch"):
        e.mul_plain(np.array([1, 2, 3, 4]))
    with pytest.raises(PaillierError, match="4 rows"):
        e.dot(np.ones((4, 2), dtype=np.int64))
    with pytest.raises(PaillierError, match="1-D or 2-D"):
        e.dot(np.ones((3, 2, 2), dtype=np.int64))
    with pytest.raises(PaillierError, match="encode floats"):
        e.dot(np.ones((3, 2)))
    with pytest.raises(PaillierError, match="not an integer"):
        e.dot(np.array([[1], ["2"], [3]], dtype=object))
    with pytest.raises(PaillierError, match="1-D"):
        pk.encrypt(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(PaillierError, match="EncryptedVector"):
        sk.decrypt([1, 2])
    with pytest.raises(PaillierError, match="not an integer"):
        pk.encrypt(["7"])
    with pytest.raises(PaillierError, match="not enough obfuscators"):
        pk.encrypt(np.array([1, 2]), obfuscators=pk.random_obfuscators(1))
    with pytest.raises(PaillierError, match="PublicKey"):
        EncryptedVector("key", [])


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan]), np.array([np.inf]), [0, float("nan")], [2.5]])
def test_float_nan_inf_plaintexts_rejected(keys, bad):
    pk, sk = keys
    with pytest.raises(PaillierError, match="NaN or Inf|encode floats"):
        pk.encrypt(bad)
    with pytest.raises(PaillierError, match="NaN or Inf|encode floats"):
        sk.encrypt(bad)
    with pytest.raises(PaillierError, match="NaN or Inf|encode floats"):
        pk.encrypt(np.array([1, 2]) if len(bad) == 2 else np.array([1])).add_plain(bad)


def test_plaintext_too_large(keys):
    pk, sk = keys
    with pytest.raises(PaillierError, match="does not fit"):
        pk.encrypt([int(pk.n)])
    with pytest.raises(PaillierError, match="plaintext 1"):
        sk.encrypt([0, -int(pk.n)])
    # the largest representable magnitudes round-trip
    lim = int(pk.max_int)
    assert sk.decrypt(pk.encrypt([lim, -lim])).tolist() == [lim, -lim]


# -- obfuscator pool ----------------------------------------------------------------------------------


def test_obfuscator_pool(keys):
    pk, sk = keys
    sk.precompute()
    pk.precompute()  # offline table builds: later encryptions only walk the tables
    assert sk._tables is not None and pk._table is not None
    pool = ObfuscatorPool(sk, 5)
    assert len(pool) == 5
    e = pool.encrypt(np.array([1, -2, 3]))
    assert len(pool) == 2 and pool.misses == 0
    e2 = pool.encrypt(np.array([1, -2, 3]))  # 2 from the pool, 1 computed online
    assert len(pool) == 0 and pool.misses == 1
    assert sk.decrypt(e).tolist() == sk.decrypt(e2).tolist() == [1, -2, 3]
    assert set(e.ciphertexts).isdisjoint(e2.ciphertexts)  # each obfuscator used once
    pub_pool = ObfuscatorPool(pk, 3)
    assert sk.decrypt(pk.encrypt(np.array([4, 5, 6]), obfuscators=pub_pool.take(3))).tolist() == [4, 5, 6]
    with pytest.raises(PaillierError):
        ObfuscatorPool("key")


# -- multiprocessing paths ------------------------------------------------------------------------------


@pytest.fixture()
def force_parallel(monkeypatch):
    for kind in list(parallel.THRESHOLDS):
        monkeypatch.setitem(parallel.THRESHOLDS, kind, 1)
    yield
    parallel.shutdown()  # stop the worker processes this test started


def _spy_on_process_pool(monkeypatch) -> list[bool]:
    """Record, for every ``map_processes`` call, whether a process pool really ran it (not the
    serial fallback): an "identical to serial" check proves nothing if the pool never started."""
    used: list[bool] = []
    orig = parallel.map_processes

    def spy(fn, tasks, workers):
        res = orig(fn, tasks, workers)
        used.append(res is not None)
        return res

    monkeypatch.setattr(parallel, "map_processes", spy)
    return used


def test_parallel_paths_give_identical_results(keys, force_parallel, monkeypatch):
    import os

    used = _spy_on_process_pool(monkeypatch)
    pool = parallel.process_pool(2)
    assert pool is not None and pool.submit(os.getpid).result() != os.getpid(), "no worker process"
    pk, sk = keys
    rng = np.random.default_rng(5)
    a = [int(v) for v in rng.integers(-(2**62), 2**62, 37)]
    e = pk.encrypt(obj(a), workers=1)
    X = rng.integers(-(2**15), 2**15, (37, 3))
    k = rng.integers(-(2**20), 2**20, 37)
    assert e.dot(X, workers=2).ciphertexts == e.dot(X, workers=1).ciphertexts
    assert e.mul_plain(k, workers=2).ciphertexts == e.mul_plain(k, workers=1).ciphertexts
    assert sk.decrypt_raw(e.ciphertexts, workers=2) == sk.decrypt_raw(e.ciphertexts, workers=1)
    # encryption is randomised: parallel ciphertexts are fresh but decrypt to the same values
    for enc in (sk.encrypt(obj(a), workers=2), pk.encrypt(obj(a), workers=2), pk.encrypt_zero(5, workers=2)):
        vals = sk.decrypt(enc, workers=2).tolist()
        assert vals == (a if len(enc) == len(a) else [0] * 5)
    assert sk.decrypt(e.rerandomize(workers=2)).tolist() == a
    assert len(used) >= 4 and all(used), f"a parallel path fell back to serial: {used}"


def test_broken_worker_pool_falls_back_to_serial(keys, force_parallel):
    import os

    assert parallel.map_processes(os._exit, [(3,)], 2) is None  # the worker died: no pool, no hang
    pk, sk = keys
    e = pk.encrypt(np.arange(5))
    assert sk.decrypt(e.mul_plain(np.full(5, 2), workers=2)).tolist() == [0, 2, 4, 6, 8]  # a fresh pool


def test_benchmark_script_smoke(capsys):
    """The benchmark runs end to end (small key, small sizes) and ends with the required JSON keys."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "simulations" / "bench" / "paillier.py"
    spec = importlib.util.spec_from_file_location("bench_paillier", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--bits", "1024", "--rows", "3000", "--cols", "2", "--workers", "1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "enc_per_s",
        "pub_enc_per_s",
        "phe_enc_per_s",
        "enc_ratio",
        "dec_per_s",
        "phe_dec_per_s",
        "dot_30k_x10_s",
        "phe_dot_30k_x10_s_est",
        "packed_values_per_ct",
    ):
        assert last[key] > 0, key
    assert last["packed_values_per_ct"] == (1024 - 2) // 40
