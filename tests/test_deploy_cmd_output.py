"""`fedcredit deploy local` refuses a directory holding a run before it opens run.log (no processes start)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedcredit.cli.main import app

ROOT = Path(__file__).resolve().parents[1]


def test_deploy_local_refuses_an_earlier_run_without_touching_it(tmp_path):
    (tmp_path / "ledger.sqlite").write_bytes(b"earlier run")
    res = CliRunner().invoke(
        app, ["deploy", "local", str(ROOT / "configs" / "vertical-lr.toml"), "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "already holds a run" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]  # no run.log appended, nothing started
