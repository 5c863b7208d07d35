"""A Flower user's `flwr run .` stops at once with a message pointing to `fedcredit simulate`.

The repository's pyproject declares the apps (``[tool.flwr.app]``) but not what each node needs
(party, data, keys), so the coordinator refuses a run config without fedcredit's ``out-dir``
before it writes anything, naming the command to use instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from flwr.app import Context, RecordDict

from parties import server_app
from parties.common.grid import server_context

ROOT = Path(__file__).resolve().parents[1]


def repo_run_config() -> dict:
    """The run config `flwr run .` would give the ServerApp: [tool.flwr.app.config] of pyproject.toml."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(doc["tool"]["flwr"]["app"]["config"])


def test_flwr_run_dot_fails_at_once_pointing_to_fedcredit_simulate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server_context()  # sets Flower's task identity as the runtime would
    ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=repo_run_config())
    with pytest.raises(RuntimeError, match="fedcredit simulate configs/vertical-lr.toml") as exc:
        server_app.app(grid=None, context=ctx)  # type: ignore[arg-type]
    assert "flwr run ." in str(exc.value) and "docs/deploy.md" in str(exc.value)
    assert list(tmp_path.iterdir()) == []  # nothing written: no stray runs/ directory


def test_a_deployment_run_config_passes_the_check():
    ctx = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={**repo_run_config(), "out-dir": "/x"}
    )
    server_app.require_launch_config(ctx)  # does not raise
