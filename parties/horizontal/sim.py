"""Run several horizontal scenarios in ONE Flower simulation (one Ray start, ~15 s saved each).

Researchers' sweeps and the tests compare modes, bank counts and skews; starting Ray for every
configuration would dominate the time on a small machine. The ServerApp here runs the given
scenarios one after another; the ClientApp resolves each message's scenario by its config hash
(``horizontal_client.register`` accepts ``scenario_of(context, config_hash)``). Simulated node i
is party i of whichever scenario is running, so scenarios may have fewer parties than nodes.

Each scenario gets an in-memory :class:`MemoryRecorder`. Optionally one more scenario
(``ledger_scenario``, run last, with as many parties as there are nodes) goes through the
production coordinator (``parties.server_app.coordinate``): signed ledger, node introduction,
and every node's signed egress log -- so a sweep can still produce one verifiable ledger.
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
from parties.horizontal import client as horizontal_client
from parties.horizontal import server as horizontal_server
from parties.horizontal.audit import Captured, RecordingGrid

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


@dataclass(frozen=True)
class DirTap:
    """A bank-side tap that saves each plaintext update (just before masking/encryption) as
    ``DIR/<scenario>-<party>-<task>-r<round>.npz`` with its sample count: the ground truth that
    audits and privacy tests compare the coordinator's view with."""

    directory: str

    def __call__(self, info: dict) -> None:
        import numpy as np

        path = Path(self.directory) / f"{info['scenario']}-{info['party']}-{info['task']}-r{info['round']}.npz"
        np.savez(path, *info["arrays"], n=np.array(info["n"]))

    def load(self, scenario: str, party: str, rnd: int, task: str = "train") -> tuple[int, list]:
        import numpy as np

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


def build_apps(
    scenarios: list[Scenario],
    out_root: Path,
    results: list[ScenarioResult],
    *,
    tap: horizontal_client.Tap | None = None,
    capture: bool = False,
    ledger_scenario: Scenario | None = None,
) -> tuple[ServerApp, ClientApp]:
    by_hash = {s.config_hash: s for s in scenarios}
    ledger_dir = out_root / "ledger-run"
    if ledger_scenario is not None:
        by_hash[ledger_scenario.config_hash] = ledger_scenario
    server = ServerApp()

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
        if ledger_scenario is not None:
            import json

            from parties.server_app import coordinate

            status = coordinate(grid, context, ledger_scenario, ledger_dir)
            mpath = ledger_dir / "metrics.json"
            metrics = json.loads(mpath.read_text()) if mpath.exists() else None
            results.append(
                ScenarioResult(
                    ledger_scenario,
                    metrics,
                    MemoryRecorder(),
                    [],
                    error="" if status.get("status") == "completed" else str(status.get("error")),
                )
            )

    server.main()(main)
    server.run_all = main  # type: ignore[attr-defined]  # for drivers without a Flower runtime
    client = ClientApp()

    def scenario_for(context: Context, config_hash: str) -> Scenario:
        if config_hash not in by_hash:
            raise KeyError(f"no scenario with hash {config_hash[:12]} in this simulation")
        return by_hash[config_hash]

    if ledger_scenario is not None:
        from parties.vertical import client as vertical_client

        vertical_client.register(client, lambda _ctx: ledger_scenario, ledger_dir)  # node introduction
    horizontal_client.register(client, scenario_for, ledger_dir if ledger_scenario is not None else None, tap=tap)
    return server, client


class InProcessGrid(Grid):
    """The real ServerApp logic and ClientApp handlers in one process, without Ray.

    Faithful where it matters for protocol tests: every message and every reply crosses as the
    deflated object tree Flower's transport ships (so neither side can see the other's objects,
    and content ids are those of a real run), each node keeps its own
    ``Context``, and a raising ClientApp becomes an error reply while its node state stays as it
    was -- what Flower's runtime does. Used for the many small failure-handling scenarios; the
    real simulation engine is exercised by :func:`run_scenarios`.
    """

    def __init__(self, client_app: ClientApp, n_nodes: int, run_id: int = 1) -> None:
        from flwr.app import RecordDict

        self.client_app = client_app
        self._run_id = run_id
        self.wire_seconds = 0.0  # time spent (de)serialising, i.e. emulating the transport
        self.contexts = {
            1000 + i: Context(
                run_id=run_id,
                node_id=1000 + i,
                node_config={"partition-id": i, "num-partitions": n_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(n_nodes)
        }

    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        self._run_id = run_id

    @property
    def run(self):  # type: ignore[no-untyped-def]
        from flwr.supercore.run import Run

        return Run.create_empty(self._run_id)

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[no-untyped-def]
        from flwr.app import Message

        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages):  # type: ignore[no-untyped-def]
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        import copy
        import time

        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        replies = []
        for msg in messages:
            t = time.perf_counter()
            inbound = _wire_copy(msg)
            self.wire_seconds += time.perf_counter() - t
            ctx = self.contexts[inbound.metadata.dst_node_id]
            saved = copy.deepcopy(ctx.state)
            try:
                reply = self.client_app(inbound, ctx)
            except Exception as ex:  # noqa: BLE001 - Flower turns this into an error reply too
                ctx.state = saved
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(ex)}:<'{ex}'>"), reply_to=inbound
                )
            t = time.perf_counter()
            replies.append(_wire_copy(reply))
            self.wire_seconds += time.perf_counter() - t
        return replies


def _wire_copy(msg):  # type: ignore[no-untyped-def]
    """Deflate a Message into Flower's object contents and inflate a new one from them."""
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
    from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(msg).items()}
    return inflate_object_from_contents(msg.object_id, contents)


def run_in_process(
    scenarios: list[Scenario],
    out_root: Path,
    *,
    n_nodes: int | None = None,
    tap: horizontal_client.Tap | None = None,
    capture: bool = False,
) -> list[ScenarioResult]:
    """Run ``scenarios`` on an :class:`InProcessGrid` (no Ray)."""
    from flwr.app import RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    results: list[ScenarioResult] = []
    server, client = build_apps(scenarios, out_root, results, tap=tap, capture=capture)
    grid = InProcessGrid(client, n_nodes or max(len(s.parties) for s in scenarios))
    # Flower stamps messages with the running task's identity (the runtime sets it normally)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    server.run_all(grid, ctx)  # type: ignore[attr-defined]
    return results


def run_scenarios(
    scenarios: list[Scenario],
    out_root: Path,
    *,
    num_supernodes: int | None = None,
    tap: horizontal_client.Tap | None = None,
    capture: bool = False,
    ledger_scenario: Scenario | None = None,
    quiet: bool = True,
) -> list[ScenarioResult]:
    """Run ``scenarios`` (then ``ledger_scenario`` with the signed ledger, in ``out_root/ledger-run``)
    in one simulation; Ray is shut down before returning."""
    from fedcredit.runtime import flower_environment

    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    flower_environment(out_root / ".flower")
    if quiet:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    from flwr.simulation import run_simulation

    results: list[ScenarioResult] = []
    server, client = build_apps(scenarios, out_root, results, tap=tap, capture=capture, ledger_scenario=ledger_scenario)
    everything = scenarios + ([ledger_scenario] if ledger_scenario is not None else [])
    n = num_supernodes or max(len(s.parties) for s in everything)
    if ledger_scenario is not None and len(ledger_scenario.parties) != n:
        raise ValueError(
            "the ledger scenario must have one party per simulated node "
            f"({len(ledger_scenario.parties)} parties, {n} nodes)"
        )
    try:
        run_simulation(
            server_app=server,
            client_app=client,
            num_supernodes=n,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": 2, "include_dashboard": False, "logging_level": "error"},
            },
        )
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
