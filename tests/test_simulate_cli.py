"""`fedcredit simulate` on a horizontal scenario: the production ClientApp's lazily imported
horizontal handlers (SecAgg+ through Flower's legacy workflow), metrics and a verifying ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.flower
def test_simulate_horizontal_secagg_through_the_production_apps(tmp_path):
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["simulate", str(REPO / "configs/horizontal-secagg.toml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "completed" and status["verification"]["ok"], status
    m = json.loads((out / "metrics.json").read_text())
    assert m["auc"] > 0.68
    assert abs(m["auc"] - m["centralised"]["pooled_same_model"]["auc"]) < 0.01
    assert len(status["verification"]["egress_logs"]) == 3
