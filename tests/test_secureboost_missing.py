"""SecureBoost with missing values (issue 17): NaN gets its own bin and a learned direction.

Plants the missingness first (30 % of the host's values, informative: missing rows default more),
then checks the federated trees equal the plaintext reference on the same NaN data -- split for
split, including the learned direction of missing values on both sides --, that the plaintext
reference equals an exact greedy booster written here (which tries NaN left and right itself),
that a tree can isolate the missing rows, that raw-value and binned predictions agree, that the
host's split ids say nothing about the direction, and that on sparse synthetic SME data
SecureBoost beats the bank-only model by >= 0.03 AUC.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from protocols.gbdt.binning import MISSING_THRESHOLD, fit_bins
from protocols.gbdt.plain import OWNER_GUEST, OWNER_HOST
from tests.test_secureboost import GUEST as GUEST_NAME
from tests.test_secureboost import HOST as HOST_NAME
from tests.test_secureboost import assert_same_trees, config, make_data, reference, train


def _with_missing(data, seed=1):
    Xg, Xh, y = data
    rng = np.random.default_rng(seed)
    Xh = Xh.copy()
    miss = rng.random(Xh.shape) < 0.3
    miss[:, 0] |= (y == 1) & (rng.random(len(y)) < 0.4)  # informative: defaulters miss column 0 more often
    Xh[miss] = np.nan
    return Xg, Xh, y


def test_missing_values_get_their_own_bin():
    X = np.array([[1.0], [2.0], [np.nan], [3.0], [np.nan]])
    edges = fit_bins(X, max_bins=4)
    assert edges.thresholds[0][-1] == MISSING_THRESHOLD
    b = edges.transform(X)[:, 0]
    assert b[2] == b[4] == edges.n_bins[0] - 1 and b[[0, 1, 3]].max() < edges.n_bins[0] - 1
    # +-inf is still refused: it is a data error, not "missing"
    import pytest

    from protocols.gbdt.binning import BinningError

    with pytest.raises(BinningError, match="non-finite"):
        fit_bins(np.array([[1.0], [np.inf]]))


def _directions(guest, host) -> list[list[bool]]:
    """Per tree, the missing direction of every split node (host ones from the host's table)."""
    out = []
    for t in guest.model.trees:
        d = [bool(v) for v in t.missing_left]
        for k in np.flatnonzero(t.owner == OWNER_HOST):
            d[k] = host.model.goes_left_when_missing(int(t.split_id[k]))
        out.append([d[k] for k in range(t.n_nodes) if t.left[k] >= 0])
    return out


def test_federated_trees_with_missing_equal_reference():
    data, val = make_data(n=480, n_val=160)
    data, val = _with_missing(data), _with_missing(val, seed=2)
    data[0][np.random.default_rng(7).random(data[0].shape) < 0.2] = np.nan  # the bank's columns too
    val[0][np.random.default_rng(8).random(val[0].shape) < 0.2] = np.nan
    cfg = config()
    guest, host, _ = train(cfg, data, val)
    ref = reference(cfg, data, val)
    assert_same_trees(guest, host, ref)
    got = _directions(guest, host)
    assert got == [[bool(t.missing_left[k]) for k in range(t.n_nodes) if t.left[k] >= 0] for t in ref.trees]
    # the data make both directions, on both sides, matter: otherwise this compares nothing
    owners = [t.owner[t.left >= 0] for t in ref.trees]
    flat_dir, flat_own = np.concatenate([np.array(d, dtype=bool) for d in got]), np.concatenate(owners)
    assert flat_dir[flat_own == OWNER_HOST].any() and flat_dir[flat_own == OWNER_GUEST].any(), got
    Xt = np.hstack(val[:2])
    p_ref = ref.predict_proba(Xt)
    from protocols.secureboost import predict_local

    np.testing.assert_array_equal(predict_local(guest.model, host.model, *val[:2]), p_ref)
    assert np.isfinite(p_ref).all()


def test_secureboost_on_sparse_synthetic_beats_bank_only(tmp_path):
    from fedcredit.data.loaders import load_party_data
    from fedcredit.data.readers import ReadOptions
    from fedcredit.data.synth import generate
    from fedcredit.data.synth_sparse import CATEGORICAL, sparsify_dir

    generate(15000, 1, tmp_path, seed=3)
    sparsify_dir(tmp_path, seed=3)
    src = f"synthetic:{tmp_path}"
    bank = load_party_data(src, "bank", party="bank_a")
    centre = load_party_data(src, "credit_centre", opts=ReadOptions(categorical=CATEGORICAL, allow_missing=True))
    known = set(centre.ids)
    common = [u for u in bank.ids if u in known]
    bank, centre = bank.select(common), centre.select(common)
    assert np.isnan(centre.features).mean() > 0.25
    test = np.random.default_rng(0).random(len(common)) < 0.3
    # the centre's text categories (tax grade, industry section, district) split as level sets
    cats = [centre.feature_names.index(c) for c in centre.categorical]
    assert len(cats) >= 2
    cfg = config(n_trees=15, max_depth=3, max_bins=16)
    from protocols.common.party import run_local
    from protocols.secureboost import SecureBoostGuest, SecureBoostHost

    guest = SecureBoostGuest("bank", "centre", bank.features[~test], bank.labels[~test], cfg)
    host = SecureBoostHost("centre", "bank", centre.features[~test], cfg, categorical=cats)
    run_local({"bank": guest, "centre": host})
    assert any(host.model.levels(i) is not None for i in range(host.model.split_ids.size))
    from protocols.gbdt.plain import PlainGBDT
    from protocols.secureboost import predict_local

    fed_auc = roc_auc_score(
        bank.labels[test], predict_local(guest.model, host.model, bank.features[test], centre.features[test])
    )
    own = PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(
        bank.features[~test], bank.labels[~test], n_guest_features=bank.n_features
    )
    bank_auc = roc_auc_score(bank.labels[test], own.predict_proba(bank.features[test]))
    assert fed_auc >= bank_auc + 0.03, (fed_auc, bank_auc)


# -- an exact greedy booster that handles NaN itself (shares no code with protocols.gbdt) --------


def _naive_tree(X, g, h, p, thresholds):
    """Level-wise exact greedy tree over fixed per-column thresholds; NaN tried right, then left.

    Per column, in this order: every threshold with NaN right (the last, +max, isolates the NaNs),
    then every value threshold with NaN left (only where the node has NaNs). A threshold whose
    interval (previous threshold, this one] holds none of the node's values repeats a partition
    and is skipped; ties go to the first candidate.
    """
    splits = []

    def build(rows, d):
        G, H = g[rows].sum(), h[rows].sum()
        leaf = {"value": -p.learning_rate * G / (H + p.reg_lambda)}
        if d == p.max_depth:
            return leaf
        best = (0.0, None)
        for j in range(X.shape[1]):
            x = X[rows, j]
            nan = np.isnan(x)
            ts = thresholds[j]
            for missing_left in (False, True):
                if missing_left and not nan.any():
                    continue
                for b, t in enumerate(ts):
                    if missing_left and t == MISSING_THRESHOLD:
                        continue
                    lo = ts[b - 1] if b else -np.inf
                    if not ((x > lo) & (x <= t)).any():
                        continue
                    go = (x <= t) | (missing_left & nan)
                    L, R = rows[go], rows[~go]
                    if L.size < p.min_samples_leaf or R.size < p.min_samples_leaf:
                        continue
                    GL, HL, GR, HR = g[L].sum(), h[L].sum(), g[R].sum(), h[R].sum()
                    if HL < p.min_child_weight or HR < p.min_child_weight:
                        continue
                    lam = p.reg_lambda
                    gain = 0.5 * (GL**2 / (HL + lam) + GR**2 / (HR + lam) - G**2 / (H + lam)) - p.gamma
                    if gain > best[0] + 1e-9:
                        best = (gain, (j, t, missing_left, L, R))
        if best[1] is None:
            return leaf
        j, t, ml, L, R = best[1]
        splits.append((d, j, float(t), ml, float(best[0])))
        return {"f": j, "t": t, "ml": ml, "l": build(L, d + 1), "r": build(R, d + 1)}

    root = build(np.arange(X.shape[0]), 0)

    def predict(Xp):
        out = np.empty(Xp.shape[0])
        for i, x in enumerate(Xp):
            n = root
            while "f" in n:
                v = x[n["f"]]
                n = n["l"] if (v <= n["t"] or (np.isnan(v) and n["ml"])) else n["r"]
            out[i] = n["value"]
        return out

    return predict, sorted(splits)


def _naive_boost(X, y, p):
    # thresholds: midpoints of each column's distinct values (<= 12: one bin per value), + max if NaN
    thresholds = []
    for j in range(X.shape[1]):
        v = np.unique(X[~np.isnan(X[:, j]), j])
        t = list((v[:-1] + v[1:]) / 2.0)
        thresholds.append(t + [MISSING_THRESHOLD] if np.isnan(X[:, j]).any() else t)
    raw = np.full(X.shape[0], np.log(y.mean() / (1 - y.mean())))
    trees = []
    for _ in range(p.n_trees):
        prob = 1 / (1 + np.exp(-raw))
        predict, splits = _naive_tree(X, prob - y, prob * (1 - prob), p, thresholds)
        raw = raw + predict(X)
        trees.append(splits)
    return raw, trees


def _int_data_with_missing(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.integers(0, 12, n), rng.integers(0, 6, n), rng.integers(0, 9, n)]).astype(float)
    logit = 0.4 * (X[:, 0] - 6) - 0.7 * (X[:, 1] - 2.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    # informative missingness: non-defaulters (low column 0) miss it more often, so NaN belongs left;
    # column 2 is missing at random
    X[(rng.random(n) < 0.15) | ((y == 0) & (rng.random(n) < 0.3)), 0] = np.nan
    X[rng.random(n) < 0.25, 2] = np.nan
    return X, y


@pytest.mark.parametrize("kw", [dict(n_trees=3, max_depth=3), dict(n_trees=2, max_depth=3, min_samples_leaf=20)])
def test_plain_reference_with_missing_matches_an_independent_exact_booster(kw):
    from protocols.gbdt.params import GBDTParams
    from protocols.gbdt.plain import PlainGBDT

    X, y = _int_data_with_missing()
    p = GBDTParams(**kw)
    ref = PlainGBDT(p, max_bins=16).fit(X, y)
    raw, want = _naive_boost(X, y, p)
    for t, tree in enumerate(ref.trees):
        depth = np.zeros(tree.n_nodes, dtype=int)
        got = []
        for k in range(tree.n_nodes):
            if tree.left[k] >= 0:
                depth[tree.left[k]] = depth[tree.right[k]] = depth[k] + 1
                got.append(
                    (int(depth[k]), int(tree.feature[k]), float(tree.threshold[k]), bool(tree.missing_left[k]))
                    + (float(tree.gain[k]),)
                )
        got = sorted(got)
        assert [s[:4] for s in got] == [s[:4] for s in want[t]], f"tree {t}"
        np.testing.assert_allclose([s[4] for s in got], [s[4] for s in want[t]], atol=1e-6)
    np.testing.assert_allclose(ref.predict_proba(X), 1 / (1 + np.exp(-raw)), atol=1e-7)
    # precondition: the data make the learned direction matter
    assert any(s[3] for tree in want for s in tree), "no split sent the missing rows left"


def test_host_split_ids_say_nothing_about_the_missing_direction():
    """Both directions of a host threshold are offered as unrelated fresh ids; only the host knows which."""
    from test_secureboost_ids import assert_opaque

    from protocols.common import wire
    from protocols.common.party import run_local
    from protocols.secureboost import SecureBoostGuest, SecureBoostHost
    from protocols.secureboost.messages import SbLevelReply
    from tests.test_secureboost import GUEST, HOST

    (Xg, Xh, y), _ = make_data(n=240, seed=4, n_val=0)
    Xg, Xh, y = _with_missing((Xg, Xh, y))
    cfg = config(n_trees=3, max_depth=3)
    parties = {GUEST: SecureBoostGuest(GUEST, HOST, Xg, y, cfg), HOST: SecureBoostHost(HOST, GUEST, Xh, cfg)}
    meaning: dict[int, tuple[int, int, bool]] = {}

    def record(name, party):
        if name == GUEST:  # the host has just replied: its state says what each id means
            s = parties[HOST].s
            for i, f, b, ml in zip(s.cand_id.tolist(), s.cand_feature, s.cand_bin, s.cand_missing_left):
                meaning.setdefault(int(i), (int(f), int(b), bool(ml)))
        return party

    transcript = run_local(parties, restart=record)
    ids = np.array(
        [i for e in transcript.sent_by(HOST) for i in wire.decode(e.payload, SbLevelReply).cand_id.tolist()],
        dtype=np.uint64,
    )
    direction = np.array([meaning[int(i)][2] for i in ids.tolist()], dtype=np.int64)
    assert ids.size >= 400 and 0.2 < direction.mean() < 0.8, "both directions must be offered, many times"
    assert_opaque(ids, direction)
    # positive control: the same ids with the direction planted in their lowest bit are caught
    with pytest.raises(AssertionError):
        assert_opaque((ids & ~np.uint64(1)) | direction.astype(np.uint64), direction)
    # and the guest's copy of a host split carries no direction: only the host's table does
    for t in parties[GUEST].model.trees:
        assert not t.missing_left[t.owner == OWNER_HOST].any()


# -- categorical columns on both sides -------------------------------------------------------------
HOST_CODES = np.array([4751.0, 5209.0, 6173.0, 7919.0, 8831.0, 9743.0])  # distinctive: findable on the wire


def _categorical_data(n=480, n_val=160, seed=11):
    """Bank: 2 numeric + 1 categorical (8 levels); centre: 2 numeric + 2 categorical (codes above), NaNs."""
    rng = np.random.default_rng(seed)
    m = n + n_val
    g_cat = rng.integers(0, 8, m).astype(float)
    h_cat = rng.integers(0, 6, m)
    h_cat2 = rng.integers(0, 4, m)
    Xg = np.column_stack([rng.normal(size=m), rng.normal(size=m), g_cat])
    Xh = np.column_stack([rng.normal(size=m), HOST_CODES[h_cat], rng.exponential(size=m), HOST_CODES[h_cat2]])
    # unordered effects: levels 1, 4, 6 (bank) and codes 0, 3, 5 (centre) default more
    logit = 0.8 * Xg[:, 0] + 1.2 * np.isin(g_cat, [1, 4, 6]) + 1.4 * np.isin(h_cat, [0, 3, 5]) - 1.5
    y = (rng.random(m) < 1 / (1 + np.exp(-logit))).astype(int)
    Xh[rng.random(m) < 0.2, 1] = np.nan
    Xh[rng.random(m) < 0.25, 0] = np.nan
    return (Xg[:n], Xh[:n], y[:n]), (Xg[n:], Xh[n:], y[n:])


def _train_categorical(cfg, data, val):
    from protocols.common.party import run_local
    from protocols.secureboost import SecureBoostGuest, SecureBoostHost
    from tests.test_secureboost import GUEST, HOST

    (Xg, Xh, y), (Xgv, Xhv, yv) = data, val
    parties = {
        GUEST: SecureBoostGuest(GUEST, HOST, Xg, y, cfg, X_val=Xgv, y_val=yv, categorical=[2]),
        HOST: SecureBoostHost(HOST, GUEST, Xh, cfg, X_val=Xhv, categorical=[1, 3]),
    }

    def rt(name, party):  # every step through to_state/from_state, as the Flower nodes do
        if name == GUEST:
            return SecureBoostGuest.from_state(party.to_state(), Xg, y, Xgv, yv)
        return SecureBoostHost.from_state(party.to_state(), Xh, Xhv)

    transcript = run_local(parties, restart=rt)
    return parties[GUEST], parties[HOST], transcript


def test_federated_categorical_trees_equal_reference():
    from protocols.gbdt.plain import PlainGBDT
    from protocols.secureboost import predict_local

    data, val = _categorical_data()
    cfg = config(n_trees=4, max_depth=3, max_bins=16)
    guest, host, _ = _train_categorical(cfg, data, val)
    ref = PlainGBDT(cfg.gbdt_params(), max_bins=cfg.max_bins).fit(
        np.hstack(data[:2]), data[2], n_guest_features=3, categorical=[2, 4, 6], X_val=np.hstack(val[:2]), y_val=val[2]
    )
    assert_same_trees(guest, host, ref)  # owners, features, thresholds (NaN for level sets), gains, leaves
    hm = host.model
    n_cat = {"guest": 0, "host": 0}
    for t, (a, b) in enumerate(zip(guest.model.trees, ref.trees)):
        for k in np.flatnonzero(a.left >= 0):
            if a.owner[k] == OWNER_HOST:
                i = int(hm.positions(a.split_id[k : k + 1])[0])
                got, ml = hm.levels(i), bool(hm.missing_left[i])
                n_cat["host"] += got is not None
            else:
                got, ml = a.levels(k), bool(a.missing_left[k])
                n_cat["guest"] += got is not None
            want = b.levels(k)
            assert (got is None) == (want is None), f"tree {t} node {k}: categorical or not"
            if got is not None:
                assert got.tolist() == want.tolist(), f"tree {t} node {k}: left levels differ"
            assert ml == bool(b.missing_left[k]), f"tree {t} node {k}: missing direction differs"
    assert n_cat["guest"] >= 1 and n_cat["host"] >= 2, n_cat  # both sides really split on level sets
    np.testing.assert_array_equal(predict_local(guest.model, hm, *val[:2]), ref.predict_proba(np.hstack(val[:2])))
    # a level never seen in training goes right on both sides, in both halves and in the reference
    Xg_new, Xh_new = val[0][:20].copy(), val[1][:20].copy()
    Xg_new[:, 2], Xh_new[:, 1] = 99.0, 1234.0
    np.testing.assert_array_equal(
        predict_local(guest.model, hm, Xg_new, Xh_new), ref.predict_proba(np.hstack([Xg_new, Xh_new]))
    )


def test_host_level_codes_never_leave_the_host():
    """The centre's level codes travel nowhere: the bank sees opaque level ids and sums only.

    Needles: every code of the centre's categorical columns as float64, float32 and int64 in every
    message either party sent (codes are distinctive numbers, so a hit is a leak, not chance); with
    a planted control. And the bank's model holds no level of a centre split.
    """
    data, val = _categorical_data(n=240, n_val=60, seed=12)
    guest, host, transcript = _train_categorical(config(n_trees=2, max_depth=3), data, val)
    assert any(hm_levels is not None for hm_levels in map(host.model.levels, range(host.model.split_ids.size)))
    needles = {
        f"{c:g} as {kind}": pat
        for c in HOST_CODES
        for kind, pat in (
            ("float64", np.float64(c).tobytes()),
            ("float32", np.float32(c).tobytes()),
            ("int64", np.int64(c).tobytes()),
        )
    }
    sent = transcript.sent_by(HOST_NAME) + transcript.sent_by(GUEST_NAME)
    found = [(e.kind, what) for e in sent for what, pat in needles.items() if pat in e.payload]
    assert not found, found[:5]
    probe = transcript.sent_by(HOST_NAME)[0].payload
    planted = probe[:100] + np.array([HOST_CODES[2]], dtype=np.int64).tobytes() + probe[100:]
    assert any(pat in planted for pat in needles.values()), "positive control: a planted code was not found"
    for t in guest.model.trees:
        assert (t.cat_start[t.owner == OWNER_HOST] < 0).all()
        assert not np.isin(t.cat_levels, HOST_CODES).any()


# -- bad input and tampering around the new fields ----------------------------------------------------


def _categorical_root():
    """A one-column categorical centre (the hand-worked data): the root is a centre level-set split."""
    from protocols.secureboost import SecureBoostGuest, SecureBoostHost
    from tests.test_gbdt_reference import MISSING_KW, XC, YC

    cfg = config(n_trees=1, max_depth=1, learning_rate=1.0, min_child_weight=0.0)
    assert MISSING_KW["max_depth"] == 1
    g = SecureBoostGuest(GUEST_NAME, HOST_NAME, np.zeros((10, 1)), YC, cfg)
    h = SecureBoostHost(HOST_NAME, GUEST_NAME, XC, cfg, categorical=[0])
    first = g.start()
    reply = h.receive(first)
    return g, h, reply, XC, cfg


def test_tampered_level_choices_are_refused_by_the_centre():
    import dataclasses

    from protocols.common import wire
    from protocols.common.party import Envelope, ProtocolError
    from protocols.secureboost import SecureBoostHost
    from protocols.secureboost.messages import SbLevelReply, SbSplits

    g, h, reply, XC, _ = _categorical_root()
    rep = wire.decode(reply[0].payload, SbLevelReply)
    levels = rep.cand_id[rep.cand_id.size - rep.level_group.size :]
    assert levels.size == 5 and rep.level_count.tolist() == [2, 2, 2, 2, 2]  # codes 0-3 and missing
    splits = wire.decode(g.receive(reply)[0].payload, SbSplits)
    assert splits.n_levels.tolist() == [3] and set(splits.level_ids.tolist()) < set(levels.tolist())
    bad = {
        "every level goes left": dataclasses.replace(splits, level_ids=levels, n_levels=np.array([5], np.int32)),
        "not levels of the split's column": dataclasses.replace(
            splits, level_ids=np.array([*splits.level_ids[:2], 12345], np.uint64)
        ),
        "wrong length": dataclasses.replace(splits, n_levels=np.array([2], np.int32)),
    }
    for why, msg in bad.items():
        fresh = SecureBoostHost.from_state(h.to_state(), XC)
        with pytest.raises(ProtocolError, match=why):
            fresh.receive([Envelope(GUEST_NAME, HOST_NAME, wire.encode(msg))])
    # the honest choice goes through
    SecureBoostHost.from_state(h.to_state(), XC).receive([Envelope(GUEST_NAME, HOST_NAME, wire.encode(splits))])


def test_malformed_level_groups_are_refused_by_the_bank():
    import dataclasses

    from protocols.common import wire
    from protocols.common.party import Envelope, ProtocolError
    from protocols.secureboost import SecureBoostGuest
    from protocols.secureboost.messages import SbLevelReply

    g, _, reply, _, _ = _categorical_root()
    rep = wire.decode(reply[0].payload, SbLevelReply)
    for field, value in (
        ("level_group", np.zeros(rep.level_group.size, np.int32)),  # group 0 is "threshold candidate"
        ("level_count", rep.level_count[:-1]),
        ("level_count", np.zeros(rep.level_count.size, np.int64)),
    ):
        bad = dataclasses.replace(rep, **{field: value})
        fresh = SecureBoostGuest.from_state(g.to_state(), np.zeros((10, 1)), g.y)
        with pytest.raises(ProtocolError, match="categorical level groups/counts malformed"):
            fresh.receive([Envelope(HOST_NAME, GUEST_NAME, wire.encode(bad))])


def test_too_many_levels_is_a_clear_error_naming_party_and_column():
    from protocols.secureboost import SecureBoostHost

    X = np.column_stack([np.arange(40.0) % 20, np.arange(40.0)])
    with pytest.raises(ValueError, match=r"host 'centre'.*categorical column 0 has 20 levels.*max_bins=16"):
        SecureBoostHost(HOST_NAME, GUEST_NAME, X, config(max_bins=16), categorical=[0])


def test_a_host_model_saved_before_issue_17_still_loads_and_sends_nan_right():
    from protocols.common import wire
    from protocols.secureboost.model import SecureBoostHostModel, _HostModelWireV1

    old = wire.encode(
        _HostModelWireV1(
            "secureboost-host-model/1",
            2,
            np.array([7, 9], np.uint64),
            np.array([0, 1], np.int32),
            np.array([0.5, 1.5]),
            np.array([0, 0], np.int32),
        )
    )
    m = SecureBoostHostModel.from_bytes(old)
    assert not m.missing_left.any() and (m.cat_start < 0).all()
    X = np.array([[np.nan, 1.0], [0.0, np.nan]])
    np.testing.assert_array_equal(m.directions(X, np.array([0, 1]), np.array([7, 9], np.uint64)), [False, False])
    assert SecureBoostHostModel.from_bytes(m.to_bytes()).split_ids.tolist() == [7, 9]
