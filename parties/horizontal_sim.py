"""Run several horizontal scenarios in ONE Flower simulation (one Ray start, ~15 s saved each).

Researchers' sweeps and the tests compare modes, bank counts and skews; starting Ray for every
configuration would dominate the time on a small machine. The ServerApp here runs the given
scenarios one after another; the ClientApp resolves each message's scenario by its config hash
(``horizontal_client.register`` accepts ``scenario_of(context, config_hash)``). Simulated node i
is party i of whichever scenario is running, so scenarios may have fewer parties than nodes.

Each scenario gets an in-memory :class:`MemoryRecorder` (the production path,
``fedcredit simulate``, uses the signed ledger instead).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedcredit.config import Scenario
from parties import horizontal_client, horizontal_server
from parties.horizontal_audit import Captured, RecordingGrid

log = logging.getLogger(__name__)


@dataclass
class MemoryRecorder:
    """Ledger stand-in: keeps step records and events in lists."""

    steps: list[dict] = field(default_factory=list)
    events: list[tuple[str, dict]] = field(default_factory=list)

    def step(self, step: str, round: int, messages: list[dict], metrics: dict | None = None) -> None:
        self.steps.append({"step": step, "round": round, "messages": messages, "metrics": metrics or {}})

    def event(self, kind: str, payload: dict) -> None:
        self.events.append((kind, payload))

    def events_of(self, kind: str) -> list[dict]:
        return [p for k, p in self.events if k == kind]


@dataclass
class ScenarioResult:
    scenario: Scenario
    metrics: dict[str, Any] | None
    recorder: MemoryRecorder
    captured: list[Captured]
    error: str = ""


def build_apps(scenarios: list[Scenario], out_root: Path, results: list[ScenarioResult], *,
               tap: horizontal_client.Tap | None = None, capture: bool = False) -> tuple[ServerApp, ClientApp]:
    by_hash = {s.config_hash: s for s in scenarios}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        for i, sc in enumerate(scenarios):
            rec = MemoryRecorder()
            cap = RecordingGrid(grid, capture=capture)
            try:
                metrics = horizontal_server.run(cap, context, sc, rec, out_root / f"{i:02d}-{sc.name}")
                results.append(ScenarioResult(sc, metrics, rec, cap.captured))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next scenario
                log.error("scenario %s failed:\n%s", sc.name, traceback.format_exc())
                results.append(ScenarioResult(sc, None, rec, cap.captured, error=f"{type(exc).__name__}: {exc}"))

    client = ClientApp()

    def scenario_for(context: Context, config_hash: str) -> Scenario:
        if config_hash not in by_hash:
            raise KeyError(f"no scenario with hash {config_hash[:12]} in this simulation")
        return by_hash[config_hash]

    horizontal_client.register(client, scenario_for, None, tap=tap)
    return server, client


def run_scenarios(scenarios: list[Scenario], out_root: Path, *, num_supernodes: int | None = None,
                  tap: horizontal_client.Tap | None = None, capture: bool = False,
                  quiet: bool = True) -> list[ScenarioResult]:
    """Run ``scenarios`` in one simulation; Ray is shut down before returning."""
    from fedcredit.runtime import flower_environment

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    flower_environment(out_root / ".flower")
    if quiet:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    from flwr.simulation import run_simulation

    results: list[ScenarioResult] = []
    server, client = build_apps(scenarios, out_root, results, tap=tap, capture=capture)
    n = num_supernodes or max(len(s.parties) for s in scenarios)
    try:
        run_simulation(server_app=server, client_app=client, num_supernodes=n,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": 2, "include_dashboard": False,
                                                     "logging_level": "error"}})
    finally:
        _shutdown_ray()
    return results


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:  # pragma: no cover - ray comes with flwr[simulation]
        pass
