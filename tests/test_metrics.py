"""Metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from fedcredit import metrics


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    score = np.clip(np.round(0.3 * y + rng.normal(0.35, 0.2, 2000), 2), 0.01, 0.99)  # many ties
    return y, score


def test_auc_matches_sklearn(sample):
    y, s = sample
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_computed_with_tie():
    # pairs (pos, neg): (0.8,0.1) 1, (0.8,0.4) 1, (0.4,0.1) 1, (0.4,0.4) 0.5 -> 3.5/4
    assert metrics.auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert metrics.gini([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.75)


def test_auc_perfect_and_reversed():
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0


def test_ks_hand_computed():
    # thresholds from the top: after 0.9 (pos) TPR=1/2 FPR=0; after 0.7 (neg) 1/2,1/3;
    # after 0.6 (pos) TPR=1, FPR=1/3 -> KS = 2/3
    y = [1, 0, 1, 0, 0]
    s = [0.9, 0.7, 0.6, 0.3, 0.2]
    assert metrics.ks(y, s) == pytest.approx(2 / 3)


def test_ks_matches_roc_curve(sample):
    from sklearn.metrics import roc_curve

    y, s = sample
    fpr, tpr, _ = roc_curve(y, s)
    assert metrics.ks(y, s) == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_log_loss_matches_sklearn(sample):
    y, s = sample
    assert metrics.log_loss(y, s) == pytest.approx(sk_log_loss(y, s), rel=1e-10)


def test_psi_hand_computed():
    expected = np.arange(100, dtype=float)  # quartile edges at 24.75, 49.5, 74.25
    actual = np.r_[np.full(40, 10.0), np.full(20, 30.0), np.full(20, 60.0), np.full(20, 90.0)]
    e = np.array([0.25, 0.25, 0.25, 0.25])
    a = np.array([0.40, 0.20, 0.20, 0.20])
    want = float(np.sum((a - e) * np.log(a / e)))
    assert metrics.psi(expected, actual, bins=4) == pytest.approx(want, rel=1e-12)
    assert metrics.psi(expected, expected, bins=4) == pytest.approx(0.0, abs=1e-12)


def test_psi_detects_shift():
    rng = np.random.default_rng(1)
    base = rng.normal(size=5000)
    assert metrics.psi(base, rng.normal(size=5000)) < 0.02
    assert metrics.psi(base, rng.normal(1.0, 1.0, size=5000)) > 0.25


def test_confusion_counts():
    c = metrics.confusion([1, 1, 0, 0, 1], [0.9, 0.2, 0.6, 0.1, 0.5], threshold=0.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 1, 1, 1)
    assert c["precision"] == pytest.approx(2 / 3)
    assert c["recall"] == pytest.approx(2 / 3)
    assert c["accuracy"] == pytest.approx(3 / 5)


def test_summary_keys_and_logit_scores(sample):
    y, s = sample
    out = metrics.summary(y, s)
    assert set(out) == {"auc", "ks", "gini", "log_loss"}
    assert out["gini"] == pytest.approx(2 * out["auc"] - 1)
    # raw margins (outside [0, 1]) are squashed for log-loss; ranking metrics unchanged
    logits = np.log(s / (1 - s))
    out2 = metrics.summary(y, logits)
    assert out2["auc"] == pytest.approx(out["auc"])
    assert out2["log_loss"] == pytest.approx(out["log_loss"], rel=1e-9)


def test_bad_input_rejected():
    with pytest.raises(ValueError):
        metrics.auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        metrics.auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError):
        metrics.auc([0, 1], [0.1])
