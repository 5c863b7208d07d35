"""Restoring a hetero-LR party on frozen data does O(1) work in rows, without weakening the data check.

Each test that shows the check still holds plants its own substitution first (other data, a
copy, an unfrozen-and-edited array) and shows ``_restore`` refuses or re-digests it; the
reference digest is computed here with hashlib, independently of the memo.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from protocols.common.party import ProtocolError, run_local
from protocols.hetero_lr import BankLR, CentreLR, HeteroLRConfig, _base
from protocols.hetero_lr import bank as bank_mod
from protocols.hetero_lr.memo import FrozenMemo, frozen, is_frozen


def _cfg(**kw) -> HeteroLRConfig:
    base = dict(epochs=2, batch_size=64, learning_rate=0.3, key_bits=1024, insecure_test_key=True, seed=3)
    base.update(kw)
    return HeteroLRConfig(**base)


def _data(n: int = 256, n_val: int = 64, seed: int = 1):
    rng = np.random.default_rng(seed)
    m = n + n_val
    Xb, Xc = rng.normal(size=(m, 3)), rng.normal(size=(m, 2))
    y = (rng.random(m) < 1 / (1 + np.exp(-(Xb[:, 0] - Xc[:, 1])))).astype(np.int8)
    return (Xb[:n], y[:n], Xc[:n]), (Xb[n:], y[n:], Xc[n:])


def _reference_digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.fixture(autouse=True)
def _empty_memos():
    for m in (_base._FEATURES, _base._DIGESTS, bank_mod._BANK_DATA):
        m.clear()
    yield
    for m in (_base._FEATURES, _base._DIGESTS, bank_mod._BANK_DATA):
        m.clear()


def test_frozen_is_a_private_read_only_copy():
    a = np.arange(6.0).reshape(2, 3)
    f = frozen(a)
    assert is_frozen(f) and not is_frozen(a) and f is not a
    a[0, 0] = 99.0  # the caller's array stays the caller's
    assert f[0, 0] == 0.0
    with pytest.raises(ValueError):
        f[0, 0] = 1.0
    assert frozen(f) is f  # no second copy
    assert not is_frozen(f[:1])  # a view is not registered: never memoised
    f.flags.writeable = True  # deliberately unfrozen: no longer memoisable
    assert not is_frozen(f)


def test_memo_only_for_the_same_frozen_objects():
    memo: FrozenMemo[int] = FrozenMemo(maxsize=2)
    calls = []
    a, b = frozen(np.ones(3)), frozen(np.ones(3))
    assert memo.get("t", (a,), lambda: calls.append(1) or 1) == 1
    assert memo.get("t", (a,), lambda: calls.append(2) or 2) == 1  # hit
    assert memo.get("t", (b,), lambda: calls.append(3) or 3) == 3  # equal contents, other object: miss
    assert memo.get("u", (a,), lambda: calls.append(4) or 4) == 4  # other tag: miss
    w = np.ones(3)
    assert memo.get("t", (w,), lambda: calls.append(5) or 5) == 5
    assert memo.get("t", (w,), lambda: calls.append(6) or 6) == 6  # writeable: never memoised
    assert calls == [1, 3, 4, 5, 6]


def test_restore_on_frozen_data_reuses_the_checked_arrays_and_digest():
    (Xb, y, Xc), (Xbv, yv, Xcv) = _data()
    Xb, y, Xc, Xbv, yv, Xcv = (frozen(a) for a in (Xb, y, Xc, Xbv, yv, Xcv))
    cfg = _cfg()
    bank = BankLR("bank", "centre", Xb, y, cfg, X_val=Xbv, y_val=yv)
    centre = CentreLR("centre", "bank", Xc, cfg, X_val=Xcv)
    y_signed = np.where(y > 0, 1.0, -1.0)
    yv_signed = np.where(yv > 0, 1.0, -1.0)
    ones = np.ones((len(Xb), 1))
    want = _reference_digest(np.hstack([Xb, ones]), np.hstack([Xbv, np.ones((len(Xbv), 1))]), y_signed, yv_signed)
    assert bank.s.data_digest == want
    assert centre.s.data_digest == _reference_digest(Xc, Xcv)
    bank.start(), centre.start()
    hits = _base._DIGESTS.hits
    b2 = BankLR.from_state(bank.to_state(), Xb, y, X_val=Xbv, y_val=yv)
    c2 = CentreLR.from_state(centre.to_state(), Xc, X_val=Xcv)
    assert _base._DIGESTS.hits == hits + 2  # neither restore digested its rows again
    assert b2.X is bank.X and b2.X_int is bank.X_int and c2.X_int is centre.X_int
    assert not b2.X.flags.writeable and not b2.X_int.flags.writeable and not b2.y.flags.writeable


def test_restore_on_other_data_is_still_refused():
    (Xb, y, Xc), _ = _data()
    Xb_f, y_f, Xc_f = frozen(Xb), frozen(y), frozen(Xc)
    cfg = _cfg()
    bank = BankLR("bank", "centre", Xb_f, y_f, cfg)
    centre = CentreLR("centre", "bank", Xc_f, cfg)
    bank.start(), centre.start()
    bs, cs = bank.to_state(), centre.to_state()
    # planted: other (frozen) data, other labels, and a frozen array unfrozen and edited in place
    with pytest.raises(ProtocolError, match="digest mismatch"):
        BankLR.from_state(bs, frozen(Xb + 0.5), y_f)
    with pytest.raises(ProtocolError, match="digest mismatch"):
        BankLR.from_state(bs, Xb_f, frozen(1 - y))
    with pytest.raises(ProtocolError, match="digest mismatch"):
        CentreLR.from_state(cs, frozen(Xc[::-1]))
    Xc_f.flags.writeable = True
    Xc_f[7, 1] += 0.25
    with pytest.raises(ProtocolError, match="digest mismatch"):
        CentreLR.from_state(cs, Xc_f)
    # the same data, as another frozen copy or a plain writeable array, is accepted (digested afresh)
    BankLR.from_state(bs, frozen(Xb), frozen(y))
    BankLR.from_state(bs, Xb.copy(), y.copy())


def test_a_run_on_frozen_data_trains_the_same_model():
    train, val = _data(n=320)

    def run(wrap):
        (Xb, y, Xc), (Xbv, yv, Xcv) = ([wrap(a) for a in part] for part in (train, val))
        cfg = _cfg()
        ps = {
            "bank": BankLR("bank", "centre", Xb, y, cfg, X_val=Xbv, y_val=yv),
            "centre": CentreLR("centre", "bank", Xc, cfg, X_val=Xcv),
        }

        def rs(name, p):
            if name == "bank":
                return BankLR.from_state(p.to_state(), Xb, y, X_val=Xbv, y_val=yv)
            return CentreLR.from_state(p.to_state(), Xc, X_val=Xcv)

        run_local(ps, restart=rs)
        return ps["bank"].weights, ps["centre"].weights

    hits = _base._DIGESTS.hits
    fb, fc = run(frozen)
    assert _base._DIGESTS.hits > hits + 10
    pb, pc = run(np.array)
    np.testing.assert_array_equal(fb, pb)
    np.testing.assert_array_equal(fc, pc)
