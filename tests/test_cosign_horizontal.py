"""Horizontal runs get co-signed tree heads too (their workflows are not relay phases, so the
final head after run_end is the one every bank co-signs), and their run directory verifies."""

from __future__ import annotations

from pathlib import Path

from fedcredit import config
from fedcredit.ledger import read_records
from fedcredit.ledger.rundir import verify_run_dir
from parties.in_process import run_scenario_in_process

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "horizontal-secagg.toml"


def test_horizontal_run_dir_verifies_with_the_final_cosigned_head(tmp_path):
    sc = config.loads(CONFIG.read_text().replace("rounds = 5", "rounds = 2"))
    status = run_scenario_in_process(sc, tmp_path / "run")
    assert status["status"] == "completed", status
    rep = verify_run_dir(tmp_path / "run")
    assert rep.ok and rep.key_source == "co-signed" and rep.heads_checked >= 1, rep.errors
    for log in sorted((tmp_path / "run" / "nodes").glob("*/egress.sqlite")):
        assert read_records(log)[-1].kind == "egress_end"
