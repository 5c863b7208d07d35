"""Centralised baselines reproduce the reference numbers (ANCHORS.md) on default_credit."""

from __future__ import annotations

import json

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
