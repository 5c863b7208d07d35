"""SecureBoost and its plaintext reference against references that share none of their code.

``protocols.gbdt.plain`` provides the gain, candidate rule, tree builder and quantisation that the
federated guest also calls, so "federated == PlainGBDT" cannot see a wrong gain or a dropped
constraint. Here the trees are checked against:

* a small exact greedy booster written in this file (float gradients, every midpoint between
  distinct values, the XGBoost gain written out), on integer-valued features so that binning is
  one bin per value and both sides see the same candidate thresholds;
* scikit-learn's ``HistGradientBoostingClassifier`` (a different implementation of the same model:
  logistic loss, Newton leaves, L2 on leaf values, midpoint thresholds for few distinct values);
* trees worked by hand, where ``gamma``, ``min_child_weight``, ``reg_lambda`` and
  ``min_samples_leaf`` each decide the split.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.common.party import run_local
from protocols.gbdt.binning import MISSING_THRESHOLD
from protocols.gbdt.params import GBDTParams
from protocols.gbdt.plain import OWNER_GUEST, OWNER_HOST, PlainGBDT
from protocols.secureboost import SecureBoostConfig, SecureBoostGuest, SecureBoostHost, predict_local

# -- an independent exact greedy booster ---------------------------------------------------------


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def naive_tree(X, g, h, *, depth, lam, gamma, mcw, msl, lr):
    """Level-wise exact greedy tree: list of (node depth-first dict); returns a predict function
    and the list of splits made as (depth, feature, threshold)."""
    splits: list[tuple[int, int, float]] = []

    def build(rows, d):
        G, H = g[rows].sum(), h[rows].sum()
        leaf = {"value": -lr * G / (H + lam)}
        if d == depth:
            return leaf
        best = (0.0, None)  # a split must have gain > 0
        for j in range(X.shape[1]):
            vals = np.unique(X[rows, j])
            for t in (vals[:-1] + vals[1:]) / 2.0:
                L = rows[X[rows, j] <= t]
                R = rows[X[rows, j] > t]
                if L.size < msl or R.size < msl:
                    continue
                GL, HL, GR, HR = g[L].sum(), h[L].sum(), g[R].sum(), h[R].sum()
                if HL < mcw or HR < mcw:
                    continue
                gain = 0.5 * (GL**2 / (HL + lam) + GR**2 / (HR + lam) - G**2 / (H + lam)) - gamma
                if gain > best[0] + 1e-9:  # strictly better; ties: first feature, first threshold
                    best = (gain, (j, t, L, R))
        if best[1] is None:
            return leaf
        j, t, L, R = best[1]
        splits.append((d, j, float(t), float(best[0])))
        return {"f": j, "t": t, "l": build(L, d + 1), "r": build(R, d + 1)}

    root = build(np.arange(X.shape[0]), 0)

    def predict(Xp):
        out = np.empty(Xp.shape[0])
        for i, x in enumerate(Xp):
            n = root
            while "f" in n:
                n = n["l"] if x[n["f"]] <= n["t"] else n["r"]
            out[i] = n["value"]
        return out

    return predict, splits


def naive_boost(X, y, p: GBDTParams):
    """Raw scores on ``X`` after ``p.n_trees`` trees, and every tree's splits."""
    mean = y.mean()
    raw = np.full(X.shape[0], math.log(mean / (1 - mean)))
    all_splits = []
    for _ in range(p.n_trees):
        prob = _sig(raw)
        g, h = prob - y, prob * (1 - prob)
        predict, splits = naive_tree(
            X,
            g,
            h,
            depth=p.max_depth,
            lam=p.reg_lambda,
            gamma=p.gamma,
            mcw=p.min_child_weight,
            msl=p.min_samples_leaf,
            lr=p.learning_rate,
        )
        raw = raw + predict(X)
        all_splits.append(sorted(splits))
    return raw, all_splits


def _splits_of(tree) -> list[tuple[int, int, float, float]]:
    """(depth, feature, threshold, gain) of every split of a PlainGBDT tree."""
    depth = np.zeros(tree.n_nodes, dtype=int)
    out = []
    for k in range(tree.n_nodes):
        if tree.left[k] >= 0:
            depth[tree.left[k]] = depth[tree.right[k]] = depth[k] + 1
            out.append((int(depth[k]), int(tree.feature[k]), float(tree.threshold[k]), float(tree.gain[k])))
    return sorted(out)


def assert_same_splits(got: list, want: list, what: str) -> None:
    """Same (depth, feature, threshold) split for split; gains equal to 1e-6 (quantised gradients)."""
    got, want = sorted(got), sorted(want)
    assert [g[:3] for g in got] == [w[:3] for w in want], what
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], atol=1e-6, err_msg=what)


def int_data(n=240, seed=0):
    """Integer-valued features (<= 12 distinct values each: one bin per value) and labels."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.integers(0, 12, n), rng.integers(0, 6, n), rng.integers(0, 9, n), rng.integers(0, 3, n)])
    logit = 0.4 * (X[:, 0] - 6) - 0.7 * (X[:, 1] - 2.5) + 0.9 * (X[:, 3] == 2)
    y = (rng.random(n) < _sig(logit)).astype(float)
    return X.astype(float), y


PARAMS = [
    dict(n_trees=3, max_depth=3),
    dict(n_trees=3, max_depth=2, gamma=3.0),
    dict(n_trees=2, max_depth=3, min_child_weight=6.0),
    dict(n_trees=2, max_depth=3, reg_lambda=25.0, learning_rate=0.5),
    dict(n_trees=2, max_depth=3, min_samples_leaf=30),
]


@pytest.mark.parametrize("kw", PARAMS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_plain_reference_matches_an_independent_exact_booster(kw):
    X, y = int_data()
    p = GBDTParams(**kw)
    ref = PlainGBDT(p, max_bins=16).fit(X, y)
    raw, splits = naive_boost(X, y, p)
    for t, tree in enumerate(ref.trees):
        assert_same_splits(_splits_of(tree), splits[t], f"tree {t} with {kw}")
    assert any(splits), "the data must make the booster split at all"
    for knob, neutral in (("gamma", 0.0), ("min_child_weight", 0.0), ("min_samples_leaf", 1), ("reg_lambda", 1.0)):
        if knob in kw:  # precondition: the knob really changes the trees on this data
            _, without = naive_boost(X, y, GBDTParams(**{**kw, knob: neutral}))
            shape = [[sp[:3] for sp in tree] for tree in splits]
            assert [[sp[:3] for sp in tree] for tree in without] != shape, f"{knob}={kw[knob]} changes no split"
    np.testing.assert_allclose(ref.predict_proba(X), _sig(raw), atol=1e-7)


@pytest.mark.parametrize("kw", [PARAMS[1], PARAMS[2]], ids=["gamma", "min_child_weight"])
def test_federated_secureboost_matches_the_independent_booster(kw):
    """The federated trees themselves (not only PlainGBDT) against the independent booster."""
    X, y = int_data(n=200, seed=3)
    Xg, Xh = X[:, :2], X[:, 2:]
    cfg = SecureBoostConfig(max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1, **kw)
    guest = SecureBoostGuest("bank", "centre", Xg, y, cfg)
    host = SecureBoostHost("centre", "bank", Xh, cfg)
    run_local({"bank": guest, "centre": host})
    raw, splits = naive_boost(X, y, cfg.gbdt_params())
    np.testing.assert_allclose(predict_local(guest.model, host.model, Xg, Xh), _sig(raw), atol=1e-7)
    for t, tree in enumerate(guest.model.trees):
        got = []
        depth = np.zeros(tree.n_nodes, dtype=int)
        for k in range(tree.n_nodes):
            if tree.left[k] < 0:
                continue
            depth[tree.left[k]] = depth[tree.right[k]] = depth[k] + 1
            if tree.owner[k] == OWNER_HOST:
                f, thr = host.model.lookup(int(tree.split_id[k]))
                got.append((int(depth[k]), 2 + int(f), float(thr), float(tree.gain[k])))
            else:
                got.append((int(depth[k]), int(tree.feature[k]), float(tree.threshold[k]), float(tree.gain[k])))
        assert_same_splits(got, splits[t], f"tree {t}")


def test_plain_reference_matches_scikit_learn_hist_gradient_boosting():
    from sklearn import ensemble as sklearn_ensemble  # a dependency: its absence fails, never skips

    X, y = int_data(n=400, seed=5)
    p = GBDTParams(n_trees=5, max_depth=3, learning_rate=0.3, reg_lambda=1.0, min_child_weight=0.0)
    ref = PlainGBDT(p, max_bins=16).fit(X, y)
    hgb = sklearn_ensemble.HistGradientBoostingClassifier(
        max_iter=5,
        max_depth=3,
        learning_rate=0.3,
        l2_regularization=1.0,
        min_samples_leaf=1,
        max_leaf_nodes=None,
        max_bins=16,
        early_stopping=False,
    ).fit(X, y)
    np.testing.assert_allclose(ref.predict_proba(X), hgb.predict_proba(X)[:, 1], atol=2e-5)


# -- trees worked by hand --------------------------------------------------------------------------
#
# Eight rows, x = 1..8, balanced labels, so the base score is 0, p = 1/2, g = 1/2 - y, h = 1/4.
# With y = [1, 1, 1, 0, 1, 0, 0, 0]: g = [-.5, -.5, -.5, .5, -.5, .5, .5, .5], G = 0, H = 2.
# gain(t) = 1/2 [GL^2/(HL+lam) + GR^2/(HR+lam)] - gamma (the parent term is 0 since G = 0), and
# GR = -GL, HR = 2 - HL. With lam = 1:
#   x <= 3.5: GL = -1.5, HL = .75  -> 1/2 [2.25/1.75 + 2.25/2.25] = 1/2 [1.2857 + 1] = 1.1429
#   x <= 5.5: GL = -1.5, HL = 1.25 -> 1/2 [2.25/2.25 + 2.25/1.75] = 1.1429 (tie: the first wins)
#   x <= 4.5: GL = -1.0, HL = 1.0  -> 1/2 [1/2 + 1/2] = 0.5
#   x <= 1.5: GL = -0.5, HL = .25  -> 1/2 [.25/1.25 + .25/2.75] = 0.1455
X8 = np.arange(1.0, 9.0)[:, None]
Y8 = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float)


def _root(**kw) -> tuple[float, float]:
    """(threshold, gain) of the root of a one-level tree on the hand-worked rows ((nan, 0) if leaf);
    ``min_child_weight`` is 0 unless given (its default, 1, would already exclude x <= 3.5)."""
    p = GBDTParams(n_trees=1, max_depth=1, learning_rate=1.0, **{"min_child_weight": 0.0, **kw})
    tree = PlainGBDT(p, max_bins=16).fit(X8, Y8).trees[0]
    return (float(tree.threshold[0]), float(tree.gain[0])) if tree.left[0] >= 0 else (math.nan, 0.0)


def test_hand_worked_root_split_and_leaf_values():
    t, gain = _root()
    assert t == 3.5 and gain == pytest.approx(0.5 * (2.25 / 1.75 + 1.0), abs=1e-8)
    p = GBDTParams(n_trees=1, max_depth=1, learning_rate=1.0, min_child_weight=0.0)
    tree = PlainGBDT(p, max_bins=16).fit(X8, Y8).trees[0]
    # leaves: -G/(H + lam): left -(-1.5)/(.75 + 1) = .857143, right -(1.5)/(1.25 + 1) = -.666667
    assert tree.value[tree.left[0]] == pytest.approx(1.5 / 1.75, abs=1e-8)
    assert tree.value[tree.right[0]] == pytest.approx(-1.5 / 2.25, abs=1e-8)


def test_hand_worked_gamma_decides_whether_the_root_splits():
    # best gain before gamma is 1.1429: gamma 1.1 leaves 0.0429 > 0 (split), gamma 1.2 leaves < 0 (leaf)
    t, gain = _root(gamma=1.1)
    assert t == 3.5 and gain == pytest.approx(0.5 * (2.25 / 1.75 + 1.0) - 1.1, abs=1e-8)
    assert math.isnan(_root(gamma=1.2)[0])


def test_hand_worked_min_child_weight_on_each_side_decides_the_split():
    # min_child_weight 0.8: x <= 3.5 has HL = .75 < .8 (out), x <= 5.5 has HR = .75 (out);
    # left is the best of what remains: x <= 4.5 (HL = HR = 1, gain 0.5)
    assert _root(min_child_weight=0.8) == (4.5, pytest.approx(0.5, abs=1e-8))
    # a right-heavy case: y reversed, the mirror candidates; the right child must be checked too
    tree = PlainGBDT(GBDTParams(n_trees=1, max_depth=1, min_child_weight=0.8), max_bins=16).fit(X8, Y8[::-1]).trees[0]
    # y = [0,0,0,1,0,1,1,1]: x <= 2.5 (HL .5 out), x <= 3.5 (HL .75 out), x <= 4.5 (gain .5) ...
    # x <= 5.5 has HR = .75 < .8: out even though its gain (1.1429) is the largest
    assert float(tree.threshold[0]) == 4.5
    # min_child_weight 1.1: no candidate has both HL and HR >= 1.1 (HL + HR = 2): a leaf
    assert math.isnan(_root(min_child_weight=1.1)[0])


def test_hand_worked_reg_lambda_moves_the_split():
    # y = [0, 0, 0, 0, 1, 0, 0, 1]: mean 1/4, so p = 1/4 everywhere, g = 1/4 - y, h = 3/16, G = 0, H = 1.5
    # lam = 0:  x <= 7.5: GL = 7/4 - 1 = .75, HL = 1.3125, GR = -.75, HR = .1875
    #                     1/2 [.5625/1.3125 + .5625/.1875] = 1/2 [.428571 + 3] = 1.714286 (the best)
    #           x <= 4.5: GL = 1, HL = .75, GR = -1, HR = .75 -> 1/2 [1/.75 + 1/.75] = 1.333333
    # lam = 10: x <= 7.5: 1/2 [.5625/11.3125 + .5625/10.1875] = .052469
    #           x <= 4.5: 1/2 [1/10.75 + 1/10.75] = .093023 (the best: lambda favours the even split)
    y = np.array([0, 0, 0, 0, 1, 0, 0, 1], dtype=float)
    for lam, want_t, want_gain in ((0.0, 7.5, 0.5 * (0.5625 / 1.3125 + 3.0)), (10.0, 4.5, 1 / 10.75)):
        p = GBDTParams(n_trees=1, max_depth=1, learning_rate=1.0, reg_lambda=lam, min_child_weight=0.0)
        tree = PlainGBDT(p, max_bins=16).fit(X8, y).trees[0]
        assert float(tree.threshold[0]) == want_t and tree.gain[0] == pytest.approx(want_gain, abs=1e-8), lam
        # the left leaf -GL/(HL + lam)
        GL, HL = (0.75, 1.3125) if want_t == 7.5 else (1.0, 0.75)
        assert tree.value[tree.left[0]] == pytest.approx(-GL / (HL + lam), abs=1e-8)


def test_hand_worked_min_samples_leaf_keeps_small_children_out():
    # min_samples_leaf 4 leaves one candidate, x <= 4.5 (gain .5)
    assert _root(min_samples_leaf=4) == (4.5, pytest.approx(0.5, abs=1e-8))
    assert math.isnan(_root(min_samples_leaf=5)[0])  # no candidate keeps 5 rows on each side


# -- missing values decide the split (issue 17: NaN gets its own bin and goes right) ----------------
#
# Eight rows, balanced labels (base score 0, g = 1/2 - y, h = 1/4, G = 0, H = 2), lam = 1.
# y           = [0, 1, 0, 1, 0, 0, 1, 1]  ->  g = [.5, -.5, .5, -.5, .5, .5, -.5, -.5]
# host x      = [1, 2, 3, 4, 5, 6, NaN, NaN]  (the two missing rows are both defaulters)
# Candidates send x <= t left and everything else, NaN included, right:
#   t = 1.5: GL = .5, HL = .25  -> 1/2 [.25/1.25 + .25/2.75] = .145455
#   t = 2.5, 4.5: GL = 0         -> 0
#   t = 3.5: GL = .5, HL = .75  -> 1/2 [.25/1.75 + .25/2.25] = .126984
#   t = 5.5: GL = .5, HL = 1.25 -> .126984
#   "not missing" (t = MISSING_THRESHOLD: every value left, NaN alone right):
#            GL = 1, HL = 1.5, GR = -1, HR = .5 -> 1/2 [1/2.5 + 1/1.5] = .533333 (the best, tied with
#            its mirror "x <= 4.5 with NaN left": GL = -1, HL = 1.5, GR = 1, HR = .5; the reference's
#            scan order takes the missing split, the federated guest may take either)
# guest x     = [1, 1, 2, 2, 1, 1, 2, 2]: t = 1.5: GL = 1, HL = 1 -> 1/2 [1/2 + 1/2] = .5 (the runner-up)
# Leaves -G/(H + lam): left (values) -1/2.5 = -.4, right (missing) 1/1.5 = .666667.
YM = np.array([0, 1, 0, 1, 0, 0, 1, 1], dtype=float)
XM_HOST = np.array([1, 2, 3, 4, 5, 6, np.nan, np.nan])[:, None]
XM_GUEST = np.array([1, 1, 2, 2, 1, 1, 2, 2], dtype=float)[:, None]
MISSING_GAIN = 0.5 * (1 / 2.5 + 1 / 1.5)
MISSING_LEAVES = (-1 / 2.5, 1 / 1.5)  # (non-missing, missing)
MISSING_KW = dict(n_trees=1, max_depth=1, learning_rate=1.0, min_child_weight=0.0)


def _hand_proba(x_host: np.ndarray) -> np.ndarray:
    """The hand-worked tree's probability: the missing leaf for NaN, the other leaf otherwise."""
    return _sig(np.where(np.isnan(x_host[:, 0]), MISSING_LEAVES[1], MISSING_LEAVES[0]))


def test_hand_worked_missing_values_decide_the_split_in_the_plain_reference():
    X = np.hstack([XM_GUEST, XM_HOST])
    tree = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(X, YM).trees[0]
    assert tree.left[0] >= 0 and int(tree.feature[0]) == 1  # the host column with the NaNs, not the decoy
    assert float(tree.threshold[0]) == MISSING_THRESHOLD
    assert tree.gain[0] == pytest.approx(MISSING_GAIN, abs=1e-8)
    assert tree.value[tree.left[0]] == pytest.approx(MISSING_LEAVES[0], abs=1e-8)
    assert tree.value[tree.right[0]] == pytest.approx(MISSING_LEAVES[1], abs=1e-8)
    model = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(X, YM)
    np.testing.assert_allclose(model.predict_proba(X), _hand_proba(XM_HOST), atol=1e-8)
    # positive control: the same rows with values in place of the NaNs (1 and 6, which split the two
    # defaulters apart): host gains are at most .126984 (t = 2.5 and 4.5), so the decoy (.5) wins
    X_filled = np.hstack([XM_GUEST, np.array([1, 2, 3, 4, 5, 6, 1, 6], dtype=float)[:, None]])
    filled = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(X_filled, YM).trees[0]
    assert int(filled.feature[0]) == 0 and float(filled.threshold[0]) == 1.5


def test_hand_worked_missing_values_decide_the_split_in_federated_secureboost():
    cfg = SecureBoostConfig(max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1, **MISSING_KW)
    guest = SecureBoostGuest("bank", "centre", XM_GUEST, YM, cfg)
    host = SecureBoostHost("centre", "bank", XM_HOST, cfg)
    run_local({"bank": guest, "centre": host})
    (tree,) = guest.model.trees
    assert tree.left[0] >= 0 and tree.owner[0] == OWNER_HOST  # the centre's column with the NaNs
    f, thr = host.model.lookup(int(tree.split_id[0]))
    assert tree.gain[0] == pytest.approx(MISSING_GAIN, abs=1e-6)  # quantised gradients
    Xh_new = np.array([[np.nan], [1.0], [100.0], [-3.0], [np.nan], [4.0], [5.0]])
    Xg_new = np.array([[1.0], [2.0], [1.0], [2.0], [2.0], [1.0], [2.0]])
    got = predict_local(guest.model, host.model, Xg_new, Xh_new)
    if float(thr) == MISSING_THRESHOLD:  # the reference's choice (its scan order breaks the tie below)
        assert int(f) == 0 and not host.model.goes_left_when_missing(int(tree.split_id[0]))
        assert tree.value[tree.left[0]] == pytest.approx(MISSING_LEAVES[0], abs=1e-6)
        assert tree.value[tree.right[0]] == pytest.approx(MISSING_LEAVES[1], abs=1e-6)
        # new applicants: a NaN goes to the missing leaf, any value (even one never seen) to the other
        np.testing.assert_allclose(got, _hand_proba(Xh_new), atol=1e-6)
        return
    # An exact tie the guest may pick instead (host ids are shuffled, so federated ties fall either
    # way): "x <= 4.5, NaN left" puts {1, 2, 3, 4, NaN, NaN} (G = -1, H = 1.5) against {5, 6}
    # (G = 1, H = .5): the mirror image of the missing split, the same gain, leaves .4 and -2/3.
    assert (int(f), float(thr)) == (0, 4.5) and host.model.goes_left_when_missing(int(tree.split_id[0]))
    assert tree.value[tree.left[0]] == pytest.approx(1 / 2.5, abs=1e-6)
    assert tree.value[tree.right[0]] == pytest.approx(-1 / 1.5, abs=1e-6)
    left = np.isnan(Xh_new[:, 0]) | (Xh_new[:, 0] <= 4.5)
    np.testing.assert_allclose(got, _sig(np.where(left, 1 / 2.5, -1 / 1.5)), atol=1e-6)


# -- hand-worked: the learned direction of missing values decides the split (issue 17) -----------
# x = 1 2 3 4 NaN NaN, y = 1 1 0 0 1 1; p0 = 4/6, g = -1/3 (y=1) or 2/3 (y=0), h = 2/9, lambda = 1.
# With the NaNs sent left, "x <= 2.5" is pure: {1, 2, NaN, NaN} (GL = -4/3, HL = 8/9) | {3, 4}
# (GR = 4/3, HR = 4/9), gain 1/2 (16/9 / 17/9 + 16/9 / 13/9) = 8/17 + 8/13, leaves 12/17 and -12/13.
# Sending the NaNs right, the best is "x <= 2.5" too but impure: gain 2/13 + 2/17; isolating the
# NaNs gains 1/2 (4/9 / 17/9 + 4/9 / 13/9) = 2/17 + 2/13 -- the direction decides the split.
YD = np.array([1, 1, 0, 0, 1, 1], dtype=float)
XD = np.array([1, 2, 3, 4, np.nan, np.nan])[:, None]
DIRECTION_GAIN = 8 / 17 + 8 / 13
DIRECTION_LEAVES = (12 / 17, -12 / 13)  # (left: x <= 2.5 or missing, right)
XD_NEW = np.array([[np.nan], [0.0], [2.5], [2.6], [100.0], [np.nan]])
DIRECTION_NEW = _sig(np.array([12 / 17, 12 / 17, 12 / 17, -12 / 13, -12 / 13, 12 / 17]) + math.log(2))


def test_hand_worked_missing_direction_decides_the_split_in_the_plain_reference():
    model = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(XD, YD)
    (tree,) = model.trees
    assert tree.left[0] >= 0 and float(tree.threshold[0]) == 2.5 and bool(tree.missing_left[0])
    assert tree.gain[0] == pytest.approx(DIRECTION_GAIN, abs=1e-8)
    assert (tree.value[tree.left[0]], tree.value[tree.right[0]]) == pytest.approx(DIRECTION_LEAVES, abs=1e-8)
    np.testing.assert_allclose(model.predict_proba(XD_NEW), DIRECTION_NEW, atol=1e-8)
    # control: the same rows with the NaNs filled by 5 (above every value): "x <= 2.5" still splits
    # but the NaN rows' labels now sit on the right -- no missing direction, a lower gain
    filled = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(np.nan_to_num(XD, nan=5.0), YD).trees[0]
    assert not bool(filled.missing_left[0]) and filled.gain[0] < DIRECTION_GAIN - 0.1


@pytest.mark.parametrize("side", ["host", "guest"])
def test_hand_worked_missing_direction_decides_the_split_in_federated_secureboost(side):
    cfg = SecureBoostConfig(max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1, **MISSING_KW)
    decoy = np.zeros((6, 1))  # a constant column: no candidate at all
    Xg, Xh = (decoy, XD) if side == "host" else (XD, decoy)
    guest = SecureBoostGuest("bank", "centre", Xg, YD, cfg)
    host = SecureBoostHost("centre", "bank", Xh, cfg)
    run_local({"bank": guest, "centre": host})
    (tree,) = guest.model.trees
    if side == "host":
        assert tree.owner[0] == OWNER_HOST and not bool(tree.missing_left[0])  # the guest does not know it
        sid = int(tree.split_id[0])
        assert host.model.lookup(sid) == (0, 2.5) and host.model.goes_left_when_missing(sid)
    else:
        assert tree.owner[0] == OWNER_GUEST and float(tree.threshold[0]) == 2.5 and bool(tree.missing_left[0])
    assert tree.gain[0] == pytest.approx(DIRECTION_GAIN, abs=1e-6)  # quantised gradients
    assert (tree.value[tree.left[0]], tree.value[tree.right[0]]) == pytest.approx(DIRECTION_LEAVES, abs=1e-6)
    # new applicants: a NaN takes the learned way (left), values follow the threshold
    new_g, new_h = (np.zeros((6, 1)), XD_NEW) if side == "host" else (XD_NEW, np.zeros((6, 1)))
    np.testing.assert_allclose(predict_local(guest.model, host.model, new_g, new_h), DIRECTION_NEW, atol=1e-6)


# -- hand-worked: a categorical column splits by a set of levels (issue 17) -----------------------
# codes 0 0 1 1 2 2 3 3 NaN NaN, y = 1 1 0 0 1 1 0 0 1 1; p0 = .6, g = -.4 (y=1) or .6, h = .24.
# Per level (G, H): 0, 2 and missing (-.8, .48), 1 and 3 (1.2, .48); sorted by G/(H+1): 0, 2,
# missing, 1, 3. The prefix {0, 2, missing} is pure: GL = -2.4, HL = 1.44 | GR = 2.4, HR = .96,
# gain 1/2 (5.76/2.44 + 5.76/1.96); leaves 2.4/2.44 and -2.4/1.96. Read as ordinal codes the best
# is "x <= .5 or missing": {0, NaN} (-1.6, .96) | {1, 2, 3} (1.6, 1.44), gain 1/2 (2.56/1.96 + 2.56/2.44).
XC = np.array([0, 0, 1, 1, 2, 2, 3, 3, np.nan, np.nan])[:, None]
YC = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 1], dtype=float)
CAT_GAIN = 0.5 * (5.76 / 2.44 + 5.76 / 1.96)
CAT_LEAVES = (2.4 / 2.44, -2.4 / 1.96)
XC_NEW = np.array([[0.0], [2.0], [np.nan], [1.0], [3.0], [7.0], [1.5]])  # 7 and 1.5: never seen
CAT_NEW = _sig(np.array([CAT_LEAVES[0]] * 3 + [CAT_LEAVES[1]] * 4) + math.log(1.5))


def test_hand_worked_categorical_levels_ordered_by_gradient_statistics_in_the_plain_reference():
    model = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(XC, YC, categorical=[0])
    (tree,) = model.trees
    assert tree.left[0] >= 0 and np.isnan(tree.threshold[0])
    assert tree.levels(0).tolist() == [0.0, 2.0] and bool(tree.missing_left[0])  # {0, 2, missing}
    assert tree.gain[0] == pytest.approx(CAT_GAIN, abs=1e-8)
    assert (tree.value[tree.left[0]], tree.value[tree.right[0]]) == pytest.approx(CAT_LEAVES, abs=1e-8)
    np.testing.assert_allclose(model.predict_proba(XC_NEW), CAT_NEW, atol=1e-8)
    # control: the same column read as ordinal codes splits on a threshold with a far lower gain
    ordinal = PlainGBDT(GBDTParams(**MISSING_KW), max_bins=16).fit(XC, YC).trees[0]
    assert ordinal.levels(0) is None and (float(ordinal.threshold[0]), bool(ordinal.missing_left[0])) == (0.5, True)
    assert ordinal.gain[0] == pytest.approx(0.5 * (2.56 / 1.96 + 2.56 / 2.44), abs=1e-8) and ordinal.gain[0] < CAT_GAIN


@pytest.mark.parametrize("side", ["host", "guest"])
def test_hand_worked_categorical_levels_in_federated_secureboost(side):
    """The same hand-worked split when the column is the bank's own, and when it is the centre's.

    For the centre's column the bank receives the per-level sums under opaque ids, orders and scans
    them itself, and names the left levels by id; only the centre knows they are codes 0 and 2.
    """
    cfg = SecureBoostConfig(max_bins=16, key_bits=1024, insecure_test_key=True, n_workers=1, **MISSING_KW)
    zeros = np.zeros((10, 1))
    Xg, Xh = (zeros, XC) if side == "host" else (XC, zeros)
    guest = SecureBoostGuest("bank", "centre", Xg, YC, cfg, categorical=[0] if side == "guest" else ())
    host = SecureBoostHost("centre", "bank", Xh, cfg, categorical=[0] if side == "host" else ())
    run_local({"bank": guest, "centre": host})
    (tree,) = guest.model.trees
    if side == "host":
        assert tree.owner[0] == OWNER_HOST and tree.levels(0) is None  # the bank holds no level
        i = int(host.model.positions(tree.split_id[:1])[0])
        assert host.model.levels(i).tolist() == [0.0, 2.0] and bool(host.model.missing_left[i])
    else:
        assert tree.owner[0] == OWNER_GUEST and tree.levels(0).tolist() == [0.0, 2.0] and bool(tree.missing_left[0])
    assert tree.gain[0] == pytest.approx(CAT_GAIN, abs=1e-6)
    assert (tree.value[tree.left[0]], tree.value[tree.right[0]]) == pytest.approx(CAT_LEAVES, abs=1e-6)
    new_g, new_h = (np.zeros((7, 1)), XC_NEW) if side == "host" else (XC_NEW, np.zeros((7, 1)))
    np.testing.assert_allclose(predict_local(guest.model, host.model, new_g, new_h), CAT_NEW, atol=1e-6)
