"""Several banks' vertical runs against one centre node (:class:`~parties.common.centre_host.CentreHost`).

Each run is a real in-process run (:mod:`parties.in_process`: the production coordinator and
ClientApp on an :class:`~parties.common.grid.InProcessGrid`), except that every message for the
centre's node goes through the shared host, which answers it from that run's slot only. Runs are
admitted through the host's concurrency limit and queue.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from flwr.app import Context, Message

from fedcredit.config import Scenario
from parties.client_app import build_client_app
from parties.common import peers
from parties.common.centre_host import CentreHost
from parties.common.grid import FIRST_NODE_ID, InProcessGrid, Tap, server_context
from parties.server_app import coordinate

CENTRE_ROLE = "credit_centre"


def _centre_index(scenario: Scenario) -> int:
    where = [i for i, spec in enumerate(scenario.parties) if spec.role == CENTRE_ROLE]
    if len(where) != 1:
        raise ValueError(f"scenario {scenario.name!r}: a hosted run needs exactly one credit_centre, got {len(where)}")
    return where[0]


def hosted_grid(
    host: CentreHost, key: str, bank: str, scenario: Scenario, out_dir: Path, *, tap: Tap | None = None
) -> InProcessGrid:
    """The grid of run ``key``: its banks answer in-process, its centre through ``host``."""
    app = build_client_app(scenario, out_dir)
    n = len(scenario.parties)
    centre_id = FIRST_NODE_ID + _centre_index(scenario)

    def route(message: Message, context: Context) -> Message:
        if message.metadata.dst_node_id == centre_id:
            return host.handle(key, message)
        return app(message, context)

    grid = InProcessGrid(route, n, tap=tap)
    slot = host.open_run(key, bank, app, out_dir, grid.contexts[centre_id].node_config)
    grid.contexts[centre_id] = slot.context  # the grid's rollback on error acts on the run's own slot
    return grid


def submit_run(
    host: CentreHost,
    key: str,
    bank: str,
    scenario: Scenario,
    out_dir: Path | str,
    *,
    keep_slot: bool = False,
    tap: Tap | None = None,
) -> Future[dict]:
    """Admit a vertical run of ``bank`` on ``host``; the future gives the coordinator's status.

    The run's slot is closed when it ends (``keep_slot=True`` leaves it for inspection, tests).
    """
    out = Path(out_dir)
    peers.provision(scenario, out)  # this run's node keys and the peers file each node trusts
    grid = hosted_grid(host, key, bank, scenario, out, tap=tap)

    def job() -> dict:
        try:
            return coordinate(grid, server_context(), scenario, out)
        finally:
            if not keep_slot:
                host.close_run(key)

    return host.submit(job)
