"""Run several horizontal scenarios in ONE Flower run: in this process, or in one Ray simulation.

Researchers' sweeps and the tests compare modes, bank counts and skews; starting Ray for every
configuration would dominate the time on a small machine (~15 s each). The coordinator here runs
the given scenarios one after another; the banks resolve each message's scenario by its config
hash. Simulated node i is party i of whichever scenario is running, so scenarios may have fewer
parties than there are nodes.

Each scenario is recorded in memory (:class:`~parties.common.recorder.MemoryRecorder`).
Optionally one more scenario (``ledger_scenario``, run last, with as many parties as there are
nodes) goes through the production coordinator (:func:`parties.server_app.coordinate`): signed
ledger, node introduction and every node's signed egress log, so a sweep can still produce one
verifiable ledger.

* :func:`run_horizontal_sweep_in_process`: on :class:`~parties.common.grid.InProcessGrid` (no Ray);
* :func:`run_horizontal_sweep_on_ray`: in Flower's simulation engine.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedcredit.config import Scenario
from parties.common import peers
from parties.common.grid import InProcessGrid, server_context
from parties.common.introduction import register_hello
from parties.common.recorder import MemoryRecorder
from parties.horizontal import client as horizontal_client
from parties.horizontal import server as horizontal_server
from parties.horizontal.audit import Captured, RecordingGrid
from parties.horizontal.bank_node import Tap
from parties.server_app import coordinate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirTap:
    """A bank-side tap that saves each plaintext update (just before masking/encryption) as
    ``DIR/<scenario>-<party>-<task>-r<round>.npz`` with its sample count: the ground truth that
    audits and privacy tests compare the coordinator's view with."""

    directory: str

    def __call__(self, info: dict) -> None:
        path = Path(self.directory) / f"{info['scenario']}-{info['party']}-{info['task']}-r{info['round']}.npz"
        np.savez(path, *info["arrays"], n=np.array(info["n"]))

    def load(self, scenario: str, party: str, rnd: int, task: str = "train") -> tuple[int, list]:
        path = Path(self.directory) / f"{scenario}-{party}-{task}-r{rnd}.npz"
        with np.load(path) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files) - 1)]
            return int(z["n"]), arrays


@dataclass
class ScenarioResult:
    scenario: Scenario
    metrics: dict[str, Any] | None
    recorder: MemoryRecorder
    captured: list[Captured]
    error: str = ""


@dataclass
class _Sweep:
    """The scenarios of one Flower run and what became of them."""

    scenarios: list[Scenario]
    out_root: Path
    capture: bool = False
    ledger_scenario: Scenario | None = None
    results: list[ScenarioResult] = field(default_factory=list)

    @property
    def ledger_dir(self) -> Path:
        return self.out_root / "ledger-run"

    def coordinate(self, grid: Grid, context: Context) -> None:
        """The coordinator's side: every scenario in turn, then the ledger scenario."""
        for i, sc in enumerate(self.scenarios):
            rec = MemoryRecorder()
            cap = RecordingGrid(grid, capture=self.capture)
            try:
                metrics = horizontal_server.run(cap, context, sc, rec, self.out_root / f"{i:02d}-{sc.name}")
                self.results.append(ScenarioResult(sc, metrics, rec, cap.captured))
            except Exception as exc:  # noqa: BLE001 - report and go on with the next scenario
                log.error("scenario %s failed:\n%s", sc.name, traceback.format_exc())
                self.results.append(ScenarioResult(sc, None, rec, cap.captured, error=f"{type(exc).__name__}: {exc}"))
        if self.ledger_scenario is not None:
            status = coordinate(grid, context, self.ledger_scenario, self.ledger_dir)
            mpath = self.ledger_dir / "metrics.json"
            written = json.loads(mpath.read_text()) if mpath.exists() else None
            error = "" if status.get("status") == "completed" else str(status.get("error"))
            self.results.append(ScenarioResult(self.ledger_scenario, written, MemoryRecorder(), [], error=error))

    def client_app(self, tap: Tap | None) -> ClientApp:
        """The banks' side: every scenario's handlers, found by the config hash the coordinator sends."""
        by_hash = {s.config_hash: s for s in self.scenarios}
        ledger = self.ledger_scenario
        if ledger is not None:
            by_hash[ledger.config_hash] = ledger

        def scenario_for(context: Context, config_hash: str) -> Scenario:
            if config_hash not in by_hash:
                raise KeyError(f"no scenario with hash {config_hash[:12]} in this simulation")
            return by_hash[config_hash]

        # every bank's node key and its peers' keys (what each operator would configure): a CKKS
        # release is checked against them (fedcredit.horizontal.upload_auth)
        for sc in by_hash.values():
            peers.provision(sc, self.ledger_dir)
        app = ClientApp()
        if ledger is not None:
            register_hello(app, lambda _ctx: ledger, self.ledger_dir)
        horizontal_client.register(app, scenario_for, self.ledger_dir, tap=tap)
        return app


def run_horizontal_sweep_in_process(
    scenarios: list[Scenario], out_root: Path, *, tap: Tap | None = None, capture: bool = False
) -> list[ScenarioResult]:
    """Run ``scenarios`` on an :class:`~parties.common.grid.InProcessGrid` with one node per party
    of the largest scenario (no Ray)."""
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    sweep = _Sweep(scenarios, out_root, capture)
    grid = InProcessGrid(sweep.client_app(tap), max(len(s.parties) for s in scenarios))
    sweep.coordinate(grid, server_context())
    return sweep.results


def run_horizontal_sweep_on_ray(
    scenarios: list[Scenario],
    out_root: Path,
    *,
    num_supernodes: int | None = None,
    tap: Tap | None = None,
    capture: bool = False,
    ledger_scenario: Scenario | None = None,
    quiet: bool = True,
) -> list[ScenarioResult]:
    """Run ``scenarios`` (then ``ledger_scenario`` with the signed ledger, in ``out_root/ledger-run``)
    in one Flower simulation; Ray is shut down before returning."""
    from fedcredit.runtime import flower_environment

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    flower_environment(out_root / ".flower")
    if quiet:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    from flwr.simulation import run_simulation

    sweep = _Sweep(scenarios, out_root, capture, ledger_scenario)
    everything = scenarios + ([ledger_scenario] if ledger_scenario is not None else [])
    n = num_supernodes or max(len(s.parties) for s in everything)
    if ledger_scenario is not None and len(ledger_scenario.parties) != n:
        raise ValueError(
            "the ledger scenario must have one party per simulated node "
            f"({len(ledger_scenario.parties)} parties, {n} nodes)"
        )
    server = ServerApp()
    server.main()(sweep.coordinate)
    try:
        run_simulation(
            server_app=server,
            client_app=sweep.client_app(tap),
            num_supernodes=n,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": 2, "include_dashboard": False, "logging_level": "error"},
            },
        )
    finally:
        _shutdown_ray()
    return sweep.results


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:  # pragma: no cover - ray comes with flwr[simulation]
        pass
