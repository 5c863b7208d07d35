"""``make results`` builds the README's quality rows from each run's metrics.json, not from typed text."""

from __future__ import annotations

import json

import pytest

from simulations import results_table


def fake_run(root, name: str, mode: str, metrics: dict, ok: bool = True) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "status.json").write_text(json.dumps({"status": "completed", "mode": mode, "verification": {"ok": ok}}))


CENTRAL = {
    "lr_joint": {"auc": 0.7385},
    "lr_bank_only": {"auc": 0.7095},
    "gbdt_joint": {"auc": 0.7805},
    "gbdt_bank_only": {"auc": 0.7322},
}


def test_rows_come_from_the_runs_metrics(tmp_path, capsys):
    fake_run(tmp_path, "vertical-lr", "vertical-lr", {"auc": 0.73951, "ks": 0.39, "epochs": 5, "centralised": CENTRAL})
    fake_run(tmp_path, "secureboost", "secureboost", {"auc": 0.77941, "ks": 0.43, "trees": 30, "centralised": CENTRAL})
    assert results_table.main(["--out", str(tmp_path), "--reuse", "--only", "vertical-lr,secureboost"]) == 0
    out = capsys.readouterr().out
    assert "`fedcredit simulate configs/vertical-lr.toml`: **0.7395** (pooled LR on the same features 0.7385" in out
    assert "`fedcredit simulate configs/secureboost.toml`: **0.7794** with 30 trees" in out
    assert "centralised GBDT on the same rows 0.7805 |" in out
    assert "| `configs/secureboost.toml` | 30 trees | **0.7794** | 0.4300 |" in out
    # a changed run changes the table (the figures are not typed in)
    (tmp_path / "secureboost/metrics.json").write_text(
        json.dumps({"auc": 0.7001, "ks": 0.4, "trees": 17, "centralised": CENTRAL})
    )
    results_table.main(["--out", str(tmp_path), "--reuse", "--only", "secureboost"])
    assert "**0.7001** with 17 trees" in capsys.readouterr().out


def test_an_unverified_run_is_refused(tmp_path):
    fake_run(tmp_path, "vertical-lr", "vertical-lr", {"auc": 0.7, "ks": 0.3, "epochs": 5}, ok=False)
    with pytest.raises(SystemExit, match="verified ledger"):
        results_table.main(["--out", str(tmp_path), "--reuse", "--only", "vertical-lr"])


def test_scorecard_row_names_its_pooled_scorecards(tmp_path, capsys):
    central = {"same_bins_sklearn_lr": {"auc": 0.7586}, "optbinning_scorecard": {"auc": 0.7588}}
    metrics = {"auc": 0.7565, "ks": 0.3956, "epochs": 5, "centralised": central}
    metrics.update(bank_columns_kept=["a", "b"], centre_columns_kept=["c"])
    fake_run(tmp_path, "scorecard", "scorecard", metrics)
    assert results_table.main(["--out", str(tmp_path), "--reuse", "--only", "scorecard"]) == 0
    out = capsys.readouterr().out
    assert "| `configs/scorecard.toml` | 5 LR epochs on 3 WOE columns | **0.7565** | 0.3956 |" in out
    assert "pooled scorecard, same bins 0.7586; optbinning scorecard 0.7588 |" in out
