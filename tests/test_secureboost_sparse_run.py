"""SecureBoost on sparse public records through the production run (issue 17): empty cells and
declared text categories reach the trees as they are -- no imputation anywhere -- and the joint
model beats the bank-only one by at least 0.03 AUC on the same rows.

The federated run and its pooled references both read the files with the scenario's own options
(``categorical``, ``allow_missing``); the pooled GBDT is scikit-learn's, which takes missing
values and categories natively, so it is an independent yardstick.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedcredit import config
from fedcredit.cli.simulate_cmd import add_reference
from fedcredit.features import LocalPreprocessor
from fedcredit.ledger.rundir import verify_run_dir
from parties.in_process import run_scenario_in_process


def _scenario(data, *, mode: str = "secureboost") -> str:
    from fedcredit.data.synth_sparse import CATEGORICAL

    cats = ", ".join(f'"{c}"' for c in CATEGORICAL)
    return f"""
[run]
name = "sb-sparse"
mode = "{mode}"
seed = 7
[parties.bank_a]
role = "bank"
data = "synthetic:{data}"
[parties.credit_centre]
role = "credit_centre"
data = "synthetic:{data}"
categorical = [{cats}]
allow_missing = true
[consent]
mode = "demo"
column_categories = ["tax_grade=tax", "industry_section=registration", "district_code=registration"]
[secureboost]
n_trees = 8
max_depth = 3
max_bins = 16
key_bits = 1024
insecure_test_key = true
"""


@pytest.fixture(scope="module")
def sparse_data(tmp_path_factory):
    from fedcredit.data.synth import generate
    from fedcredit.data.synth_sparse import sparsify_dir

    data = tmp_path_factory.mktemp("sparse")
    generate(6000, 1, data, seed=3)
    sparsify_dir(data, seed=3)
    return data


def test_secureboost_runs_on_missing_and_categorical_centre_data_and_beats_bank_only(sparse_data, tmp_path):
    import pandas as pd

    centre = pd.read_csv(sparse_data / "credit_centre.csv")
    share = float(centre.drop(columns=["uscc"]).isna().to_numpy().mean())
    assert share > 0.2, f"the fixture must be sparse (missing share {share:.2f})"
    out = tmp_path / "run"
    scenario = config.loads(_scenario(sparse_data))
    status = run_scenario_in_process(scenario, out)
    assert status["status"] == "completed", status
    add_reference(scenario, out)  # what `fedcredit simulate` adds: pooled models on the run's rows
    m = json.loads((out / "metrics.json").read_text())
    ref = m["centralised"]
    bank_only = max(ref["gbdt_bank_only"]["auc"], ref["lr_bank_only"]["auc"])  # the better bank-only model
    assert m["auc"] >= bank_only + 0.03, (m["auc"], ref)
    assert m["centralised_rows"] == m["rows_intersection"]
    assert verify_run_dir(out).ok
    # the centre's node kept its missing cells and its level codes: nothing was imputed there
    part = json.loads((out / "nodes/credit_centre/model.json").read_text())
    pre = LocalPreprocessor.from_dict(part["preprocessor"])
    assert pre.keep_missing and pre.passthrough is not None and pre.passthrough.sum() == 3


def test_lr_refuses_missing_values_naming_the_column(sparse_data, tmp_path):
    """Control: the same data under hetero-LR stops at the split, naming party, row and column."""
    text = _scenario(sparse_data, mode="vertical-lr").split("[secureboost]")[0]
    text += "[lr]\nepochs = 1\nkey_bits = 1024\ninsecure_test_key = true\n"
    status = run_scenario_in_process(config.loads(text), tmp_path / "lr")
    assert status["status"] == "failed" and status["party"] == "credit_centre", status
    assert "missing" in status["error"] and "column" in status["error"], status


def test_keep_missing_preprocessor_leaves_nan_and_codes_alone():
    X = np.array([[1.0, 0.0, np.nan], [2.0, 1.0, 5.0], [np.nan, 2.0, 7.0], [4.0, np.nan, 9.0]])
    pre = LocalPreprocessor(keep_missing=True).fit(X, ["a", "level", "b"], passthrough=[False, True, False])
    Z = pre.transform(X)
    assert np.array_equal(np.isnan(Z), np.isnan(X))
    assert np.array_equal(Z[:, 1], X[:, 1], equal_nan=True)  # level codes untouched
    assert abs(np.nanmean(Z[:, 0])) < 1e-12  # statistics over the present cells only
    back = LocalPreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert np.array_equal(back.transform(X), Z, equal_nan=True)
    with pytest.raises(ValueError, match="column 'b'"):
        LocalPreprocessor().fit(X, ["a", "level", "b"])
