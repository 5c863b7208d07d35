"""Centralised baselines on default_credit: the figures are derived in this file from the bundled
raw table with scikit-learn directly (stratified 70/30 split, seed 42), not only compared with
constants. (ANCHORS.md, cited by the data module, is not in the repository; the constants below
are what the derivation gives, kept as a coarse guard against a changed data file.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fedcredit.baseline import MODELS, run_baseline
from fedcredit.cli.main import app

EXPECTED_AUC = {"lr_bank_only": 0.644, "lr_joint": 0.715, "gbdt_bank_only": 0.730, "gbdt_joint": 0.779}
EXPECTED_KS = {"lr_bank_only": 0.222, "lr_joint": 0.374, "gbdt_bank_only": 0.349, "gbdt_joint": 0.436}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    return run_baseline("default_credit", out, show=False), out


def test_default_credit_auc_matches_reference(result):
    res, _ = result
    for name, want in EXPECTED_AUC.items():
        assert res[name]["auc"] == pytest.approx(want, abs=0.01), name
        assert res[name]["ks"] == pytest.approx(EXPECTED_KS[name], abs=0.02), name
        assert res[name]["gini"] == pytest.approx(2 * res[name]["auc"] - 1)


def _derived_auc() -> dict[str, float]:
    """Each baseline re-derived here: raw table, the split, the model, the test AUC."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fedcredit.data.default_credit import load_raw, load_vertical

    df = load_raw()
    bank, centre = load_vertical("all", scaled=False)
    columns = {"bank_only": list(bank.feature_names), "joint": list(bank.feature_names) + list(centre.feature_names)}
    y = df["default_next_month"].to_numpy()
    tr, te = train_test_split(np.arange(len(df)), test_size=0.3, random_state=42, stratify=y)
    out = {}
    for part, cols in columns.items():
        X = df[cols].to_numpy(dtype=float)
        models = {
            "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
            "gbdt": HistGradientBoostingClassifier(
                random_state=42, max_iter=30, max_depth=3, max_bins=32, learning_rate=0.3, early_stopping=False
            ),
        }
        for kind, model in models.items():
            model.fit(X[tr], y[tr])
            out[f"{kind}_{part}"] = float(roc_auc_score(y[te], model.predict_proba(X[te])[:, 1]))
    return out


def test_default_credit_figures_match_an_independent_derivation(result):
    res, _ = result
    derived = _derived_auc()
    assert set(derived) == set(EXPECTED_AUC)
    for name, auc in derived.items():
        assert res[name]["auc"] == pytest.approx(auc, abs=0.002), (name, res[name]["auc"], auc)


def test_metrics_json_written(result):
    res, out = result
    data = json.loads((out / "metrics.json").read_text())
    assert list(data) == list(MODELS)
    for name in MODELS:
        assert {"auc", "ks", "gini"} <= set(data[name])
        assert data[name]["auc"] == pytest.approx(res[name]["auc"])


def test_cli_baseline_bad_dataset(tmp_path):
    res = CliRunner().invoke(app, ["baseline", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "nope" in res.output
