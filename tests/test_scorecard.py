"""Scorecard (issue 17): points maths, and the federated chain against a centralised scorecard."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from protocols.binning.config import BinningConfig
from protocols.hetero_lr.config import HeteroLRConfig
from protocols.scorecard.local import train_scorecard
from protocols.scorecard.points import ScoreScale, probability_table, score_bands


def test_scale_maths_by_hand():
    sc = ScoreScale(base_score=600, base_odds=50, pdo=20)
    # 600 points at 50:1, 620 at 100:1
    assert sc.score(np.array([1 / 51]))[0] == pytest.approx(600)
    assert sc.score(np.array([1 / 101]))[0] == pytest.approx(620)
    assert sc.probability(np.array([620.0]))[0] == pytest.approx(1 / 101)
    # base + points reproduces offset + factor * ln(odds) of the LR
    b0, coef, woe = -1.3, -0.8, np.array([-0.5, 0.1, 0.9])
    logit = b0 + coef * woe
    total = sc.base_points(b0) + sc.points(woe, coef)
    assert np.allclose(total, 600 - 20 / math.log(2) * math.log(50) - 20 / math.log(2) * logit)
    assert np.allclose(sc.probability(total), 1 / (1 + np.exp(-logit)))
    rows = probability_table(sc, 560, 640, 40)
    assert [r["score"] for r in rows] == [560, 600, 640] and rows[1]["odds_good_bad"] == pytest.approx(50)


def test_score_bands_ks_by_hand():
    s = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    bands = score_bands(s, y, n_bands=2)
    assert [b["count"] for b in bands] == [4, 4] and [b["bads"] for b in bands] == [3, 0]
    assert bands[0]["ks"] == pytest.approx(abs(3 / 3 - 1 / 5))


def test_federated_scorecard_auc_matches_centralised_on_the_same_bins():
    from fedcredit.data.default_credit import load_vertical

    btr, ctr = load_vertical("train", scaled=False)
    bte, cte = load_vertical("test", scaled=False)
    keep = np.random.default_rng(0).permutation(len(btr))[:8000]  # a subset keeps the test quick
    btr = btr.subset(keep)
    ctr, cte = ctr.select(btr.ids), cte.select(bte.ids)
    lr = HeteroLRConfig(
        epochs=8, batch_size=2048, learning_rate=0.5, lr_decay=0.3, momentum=0.9, l2=0.001,
        key_bits=1024, insecure_test_key=True, validation_fraction=0.0, early_stopping_patience=0,
    )  # fmt: skip
    cfg = BinningConfig(key_bits=1024, insecure_test_key=True)
    sc = train_scorecard(
        btr.features, btr.feature_names, btr.labels, ctr.features, ctr.feature_names,
        binning=cfg, lr=lr, scale=ScoreScale(),
    )  # fmt: skip
    score = sc.score(bte.features, cte.features)
    fed_auc = roc_auc_score(bte.labels, -score)  # higher score = safer
    # centralised: pooled WOE matrix on the same bins, sklearn LR (same l2 per row)
    Wtr = np.hstack([sc.bank.transform_own(), sc.centre.transform()])
    Wte = np.hstack([sc.bank.transform_own(X=bte.features), sc.centre.transform(X=cte.features)])
    ref = LogisticRegression(C=1 / (0.001 * len(Wtr)), max_iter=2000).fit(Wtr, btr.labels)
    ref_auc = roc_auc_score(bte.labels, ref.predict_proba(Wte)[:, 1])
    assert abs(fed_auc - ref_auc) <= 0.005, (fed_auc, ref_auc)
    assert fed_auc > 0.74
    # each party's points table names only its own columns; the joint score is base + both sums
    assert {r["column"] for r in sc.bank_points.rows} == set(sc.bank_coef) <= set(btr.feature_names)
    assert {r["column"] for r in sc.centre_points.rows} == set(sc.centre_coef) <= set(ctr.feature_names)
    assert np.allclose(score, sc.base_points + sc.bank_total(bte.features) + sc.centre_total(cte.features))
    # scores order rows as the LR probabilities do
    p = sc.scale.probability(score)
    assert roc_auc_score(bte.labels, p) == pytest.approx(fed_auc)
