"""Run one scenario with the production apps in this process: the real coordinator
(:func:`parties.server_app.coordinate`) and the real ClientApp on an
:class:`~parties.common.grid.InProcessGrid`, without Ray or network.

Tests use it to see every byte a node sends (``tap``) and to make nodes fail (``prepare_grid``
may e.g. mark nodes as down); the outputs (ledger, egress logs, model parts, ``status.json``)
are those of a real run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedcredit.config import Scenario
from parties.client_app import build_client_app
from parties.common import peers
from parties.common.exchange import ExchangeHub
from parties.common.grid import InProcessGrid, Tap, server_context
from parties.server_app import coordinate


def run_scenario_in_process(
    scenario: Scenario,
    out_dir: Path | str,
    *,
    tap: Tap | None = None,
    prepare_grid: Callable[[InProcessGrid], None] | None = None,
    resume: bool = False,
    stream: bool | ExchangeHub = True,
) -> dict:
    """Run ``scenario`` end to end; returns the coordinator's status (as in ``status.json``).

    ``resume`` continues the interrupted run in ``out_dir`` on fresh node contexts, as a new Flower
    run would (nodes restore their own checkpoints; :mod:`parties.common.checkpoint`)."""
    out = Path(out_dir)
    peers.provision(scenario, out)  # each node's operator configuration: its key, its peers' keys
    grid = InProcessGrid(build_client_app(scenario, out), len(scenario.parties), tap=tap)
    if prepare_grid is not None:
        prepare_grid(grid)
    return coordinate(grid, server_context(), scenario, out, resume=resume, stream=stream)
