"""docs/api.md's worked example runs through the Python API, and the API's own contract holds.

The example's ``python`` blocks are executed as written (in a scratch directory that links the
repository's ``configs/``), so the page cannot drift from the code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import fedcredit
from fedcredit.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_docs_api_example_runs_and_produces_a_table_and_a_plot(tmp_path, capsys):
    blocks = python_blocks((ROOT / "docs" / "api.md").read_text())
    assert blocks, "docs/api.md has no python example"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {"__name__": "docs_api_example"}
        for code in blocks:
            exec(compile(code, "docs/api.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    table = namespace["table"]
    assert list(table["planned_epochs"]) == [1, 2, 4]
    assert table["auc"].between(0.55, 1.0).all(), table
    assert list(table["epochs"]) == [1, 2, 4]  # the runs trained what they were given
    assert (tmp_path / "runs/api-demo/auc-vs-epochs.png").stat().st_size > 5_000
    out = capsys.readouterr().out
    assert "planned_epochs" in out and "report of the last run" in out
    for e in (1, 2, 4):
        run = fedcredit.RunResult.open(tmp_path / f"runs/api-demo/epochs-{e}")
        assert run.verified and run.report_path is not None
        assert set(run.model_parts()) == {"bank_a", "credit_centre"}
        assert run.status["scenario"] == f"epochs-{e}"


def test_with_settings_is_checked_and_leaves_the_original_unchanged():
    base = fedcredit.Scenario.from_file(ROOT / "configs" / "vertical-lr.toml")
    varied = base.with_settings({"lr.epochs": 2, "run.name": "two"})
    assert (varied.get("lr.epochs"), varied.name) == (2, "two")
    assert base.get("lr.epochs") == 5 and base.name == "vertical-lr"
    with pytest.raises(ConfigError, match="epochs"):
        base.with_settings({"lr.epochs": 0})
    with pytest.raises(ConfigError, match="no_such_key"):
        base.with_settings({"lr.no_such_key": 1})
    # TOML text and dicts give the same scenario as the file
    assert fedcredit.Scenario.coerce(base.to_toml()).load().config_hash == base.load().config_hash
    assert fedcredit.Scenario.coerce(dict(base.tables)).tables == base.tables


def test_simulate_refuses_a_directory_holding_a_run(tmp_path):
    (tmp_path / "ledger.sqlite").write_bytes(b"")
    with pytest.raises(FileExistsError, match="already holds a run"):
        fedcredit.simulate(ROOT / "configs" / "vertical-lr.toml", out=tmp_path)
