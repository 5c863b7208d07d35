"""Joint inference re-checks consent tokens at query time: applicants whose token is expired or
forged are refused on the bank and never reach the centre."""

from __future__ import annotations

import json

import pandas as pd
from conftest import write_vertical_subset

from fedcredit import config
from parties.in_process import run_scenario_in_process

N_ROWS = 500


def _parties(d) -> str:
    return f"""[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
"""


def test_expired_and_forged_tokens_are_refused_at_query_time(tmp_path):
    write_vertical_subset(tmp_path, N_ROWS)
    demo = f'mode = "demo"\ndemo_dir = "{tmp_path / "demo"}"'
    train = f"""
[run]
name = "train"
mode = "vertical-lr"
{_parties(tmp_path)}[consent]
{demo}
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
"""
    assert run_scenario_in_process(config.loads(train), tmp_path / "train")["status"] == "completed"
    inference = f"""
[run]
name = "inf"
mode = "inference"
purpose = "loan_decision"
{_parties(tmp_path)}[inference]
model_dir = "{tmp_path / "train"}"
batch_size = 1000
[consent]
{demo}
demo_expired = 0.1
demo_forged = 0.05
"""
    status = run_scenario_in_process(config.loads(inference), tmp_path / "inf")
    assert status["status"] == "completed", status
    m = json.loads((tmp_path / "inf/metrics.json").read_text())
    assert set(m["refused"]) == {"expired", "forged"} and m["refused"]["expired"] > 25, m["refused"]
    scores = pd.read_csv(tmp_path / "inf/nodes/bank/scores.csv", dtype={"uscc": str, "status": str})
    refused = set(scores.loc[scores["status"].str.startswith("refused_consent:"), "uscc"])
    assert len(refused) == sum(m["refused"].values())
    log = pd.read_csv(tmp_path / "inf/nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert not refused & set(log["uscc"]) and len(log) == N_ROWS - len(refused)
