"""`fedcredit simulate` of a scorecard scenario on real-shaped exports (issue 17): a GB18030
`;`-delimited bank CSV with Chinese headers and a centre .xlsx, read through the party tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import write_vertical_subset

SCENARIO = """
[run]
name = "scorecard-test"
mode = "scorecard"
purpose = "credit_risk_modelling"
seed = 42

[parties.bank]
role = "bank"
data = "{dir}/银行.csv"
id_column = "统一社会信用代码"
label_column = "是否违约"

[parties.credit_centre]
role = "credit_centre"
data = "{dir}/centre.xlsx"
id_column = "统一社会信用代码"

[consent]
mode = "demo"

[binning]
key_bits = 1024
insecure_test_key = true

[scorecard]
pdo = 40
bands = 5

[lr]
epochs = 6
batch_size = 1024
key_bits = 1024
insecure_test_key = true
"""


def test_simulate_scorecard_from_gb18030_csv_and_xlsx(tmp_path):
    pytest.importorskip("openpyxl")
    b, c = write_vertical_subset(tmp_path, 5000)
    b = b.rename(columns={"uscc": "统一社会信用代码", "default_12m": "是否违约"})
    (tmp_path / "银行.csv").write_bytes(b.to_csv(index=False, sep=";").encode("gb18030"))
    c.rename(columns={"uscc": "统一社会信用代码"}).to_excel(tmp_path / "centre.xlsx", index=False)
    scenario = tmp_path / "scorecard.toml"
    scenario.write_text(SCENARIO.format(dir=tmp_path), encoding="utf-8")
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["simulate", str(scenario), "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["auc"] > 0.7 and m["rows_train"] + m["rows_test"] == 5000
    ref = m["centralised"]["same_bins_sklearn_lr"]["auc"]
    assert abs(m["auc"] - ref) < 0.01, (m["auc"], ref)
    assert m["centralised"]["optbinning_scorecard"]["auc"] > 0.7
    nodes = out / "nodes"  # each party's exports on its own node
    bank_pts = pd.read_csv(nodes / "bank" / "points.csv")
    centre_pts = pd.read_csv(nodes / "credit_centre" / "points.csv")
    assert set(centre_pts["column"]) == set(m["centre_columns_kept"]) and "(base)" in set(bank_pts["column"])
    assert not set(centre_pts["column"]) & set(bank_pts["column"])
    bands = json.loads((nodes / "bank" / "bands.json").read_text())
    assert len(bands) == 5 and sum(r["count"] for r in bands) == m["rows_test"]
    ivr = pd.read_csv(nodes / "bank" / "iv_report.csv")
    assert set(ivr["party"]) == {"bank", "credit_centre"}
    assert (nodes / "bank" / "score_probability.csv").exists() and "federated" in res.output
    assert "verified" in res.output  # a Flower run now: signed ledger checked against both egress logs


def test_scorecard_mode_refuses_to_run_without_consent_material(tmp_path):
    """Like every vertical mode, it fails closed at setup when no consent tokens are configured."""
    from fedcredit import config
    from parties.in_process import run_scenario_in_process

    text = open("configs/scorecard.toml").read().replace('mode = "demo"', 'mode = "enforce"')
    assert 'mode = "enforce"' in text  # the planted change took
    status = run_scenario_in_process(config.loads(text), tmp_path / "out")
    assert status["status"] == "failed" and status["step"] == "setup" and "consent" in status["error"]
    assert not (tmp_path / "out" / "nodes" / "bank" / "points.csv").exists()
