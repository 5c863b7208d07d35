"""The coordinator's Flower ServerApp (hosted by the credit centre's platform operator).

``build_server_app(scenario, out_dir)`` is used by ``fedcredit simulate`` (scenario passed in
memory); the module-level ``app`` is what ``flwr run`` loads in deployment, reading the scenario
path and output directory from the run config (``scenario``, ``out-dir``). Whatever happens, the
ledger gets a ``run_end`` record and ``status.json`` says how the run ended and who failed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedcredit import config
from fedcredit.config import Scenario
from fedcredit.config.sections import RunSettings
from fedcredit.ledger import LedgerError
from parties.common.checkpoint import CheckpointError, CoordinatorCheckpoint
from parties.common.dataplane import DataPlaneGrid, DataPlaneServer
from parties.common.exchange import ExchangeHub
from parties.common.polling import PromptGrid
from parties.common.recorder import LedgerRecorder
from parties.common.relay import RunFailed

log = logging.getLogger(__name__)
STREAMED_MODES = frozenset({"vertical-lr", "scorecard"})  # modes whose training streams


def _scenario_from(context: Context) -> Scenario:
    path = context.run_config.get("scenario")
    if not path:
        raise RunFailed("coordinator", "setup", "run config has no 'scenario' path")
    return config.load(str(path))


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float))
    tmp.replace(path)


def coordinate(
    grid: Grid,
    context: Context,
    scenario: Scenario,
    out_dir: Path,
    *,
    resume: bool = False,
    stream: bool | ExchangeHub = True,
) -> dict:
    """Run one scenario end to end; returns the status dict also written to status.json.

    ``resume`` continues the interrupted run in ``out_dir`` from its ``checkpoint.json``
    (vertical training only; :mod:`parties.common.checkpoint`). ``stream``: where vertical
    training streams its exchanges (:mod:`parties.common.exchange`): a hub the caller runs (TLS,
    deployment), True for a loopback hub of this run's own (simulation, in-process: every node
    on this machine), False for none (one relay step per exchange). ``[run] stream = false``
    turns streaming off whatever is passed.
    """
    if stream is True and scenario.mode in STREAMED_MODES and scenario.settings(RunSettings).stream:
        hub = ExchangeHub()
        try:
            return coordinate(grid, context, scenario, out_dir, resume=resume, stream=hub)
        finally:
            hub.stop()
    exchange = stream if isinstance(stream, ExchangeHub) and scenario.settings(RunSettings).stream else None
    out_dir.mkdir(parents=True, exist_ok=True)
    key = None
    if "coordinator-key" in context.run_config:
        from fedcredit.ledger import load_private_key

        key = load_private_key(str(context.run_config["coordinator-key"]))
    timeout = scenario.settings(RunSettings).step_timeout
    checkpoint = None
    if resume:
        try:
            checkpoint, recorder = _resume_recorder(out_dir, scenario, key)
        except (CheckpointError, LedgerError, OSError) as exc:
            # nothing of the interrupted run is touched: its ledger still verifies as it was
            refused = {"scenario": scenario.name, "mode": scenario.mode, "status": "failed", "party": "coordinator"}
            refused.update(step="resume", error=f"cannot resume the run in {out_dir}: {exc}")
            log.error("%s", refused["error"])
            # an ended run's status.json stays as it was; the refusal goes next to it
            target = "resume-refused.json" if (out_dir / "status.json").exists() else "status.json"
            _write_json(out_dir / target, refused)
            return refused
    else:
        recorder = LedgerRecorder(out_dir, scenario, signing_key=key)
    started = time.time()
    status: dict = {
        "scenario": scenario.name,
        "mode": scenario.mode,
        "run_id": recorder.run_id,
        "ledger": str(recorder.path),
    }
    try:
        if scenario.mode == "horizontal":  # imported on demand: horizontal training needs torch (~6 s)
            from parties.common.introduction import introduce
            from parties.horizontal.server import run as run_horizontal

            introduce(grid, recorder, scenario, timeout)
            metrics = run_horizontal(grid, context, scenario, recorder, out_dir)
        elif scenario.mode == "inference":
            from parties.vertical.inference_server import run_inference

            metrics = run_inference(grid, scenario, recorder, out_dir, timeout=timeout)
        else:
            from parties.vertical.server import run_vertical

            metrics = run_vertical(
                grid, scenario, recorder, out_dir, timeout=timeout, resume=checkpoint, exchange=exchange
            )
        metrics.setdefault("seconds", round(time.time() - started, 2))
        transport_stats = getattr(grid, "stats", None)
        if callable(transport_stats):
            # the data plane: how the relay steps travelled. ``flower_round_trips`` keeps counting the
            # relay's steps (as in simulation, where each is one); ``transport`` splits them by transport
            metrics["transport"] = transport_stats()
            metrics["relay_steps"] = metrics.get("flower_round_trips")
        _write_json(out_dir / "metrics.json", metrics)
        recorder.close("completed", {"metrics": {k: metrics[k] for k in ("auc", "ks", "gini") if k in metrics}})
        status.update(status="completed", metrics_path=str(out_dir / "metrics.json"))
    except RunFailed as exc:
        log.error("run failed: %s", exc)
        recorder.close("failed", {"party": exc.party, "step": exc.step, "reason": exc.reason[:2000]})
        status.update(status="failed", party=exc.party, step=exc.step, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the ledger must still be closed and the status written
        log.exception("coordinator error")
        recorder.event("failure", {"party": "coordinator", "step": "?", "reason": f"{type(exc).__name__}: {exc}"})
        recorder.close("failed", {"party": "coordinator", "reason": f"{type(exc).__name__}: {exc}"})
        status.update(status="failed", party="coordinator", error=f"{type(exc).__name__}: {exc}")
    _write_json(out_dir / "status.json", status)
    return status


def _resume_recorder(
    out_dir: Path, scenario: Scenario, key: Ed25519PrivateKey | None
) -> tuple[CoordinatorCheckpoint, LedgerRecorder]:
    """The interrupted run's checkpoint (for its next segment) and its ledger, reopened."""
    if scenario.mode not in ("vertical-lr", "secureboost"):
        raise CheckpointError(f"only vertical training runs resume, not {scenario.mode!r} runs")
    ck = CoordinatorCheckpoint.load(out_dir)
    if ck.scenario_hash != scenario.config_hash:
        raise CheckpointError(f"{out_dir / 'checkpoint.json'} was written for another scenario (config hash differs)")
    if key is None:  # simulation and in-process runs: the key the run made for itself
        from fedcredit.ledger import load_private_key

        key = load_private_key(out_dir / "coordinator_key.pem")
    ck.segment += 1
    recorder = LedgerRecorder.resume(out_dir, scenario, key, segment=ck.segment, checkpoint=ck.label)
    if recorder.run_id != ck.run_id:
        raise CheckpointError(f"checkpoint of run {ck.run_id} does not belong to the ledger's run {recorder.run_id}")
    return ck, recorder


NOT_A_FLWR_RUN_APP = (
    "fedcredit's apps do not run under a bare `flwr run .`: every data node needs its own party, role, data "
    "and egress-log key (its SuperNode's --node-config), and the coordinator an out-dir and a ledger key, "
    "which the repository's Flower config cannot give each simulated node. Run "
    "`fedcredit simulate configs/vertical-lr.toml` (Flower's simulation engine, the same ServerApp and "
    "ClientApp) or `fedcredit deploy local configs/vertical-lr.toml`; for `flwr run` against real "
    "SuperNodes use an app directory declaring scenario, out-dir and coordinator-key (docs/deploy.md)."
)


def require_launch_config(context: Context) -> None:
    """Stop at once, before writing anything, when started without fedcredit's run config (``out-dir``)."""
    if "out-dir" not in context.run_config:
        raise RuntimeError(NOT_A_FLWR_RUN_APP)


def build_server_app(
    scenario: Scenario | None = None, out_dir: Path | None = None, *, stream: bool = True
) -> ServerApp:
    """The coordinator's ServerApp; without ``scenario``/``out_dir`` they come from the run config.

    Simulation (``scenario`` given) streams training through a loopback hub when ``stream``
    (every node runs on this machine); a deployment streams through a TLS hub next to the data
    plane, with its certificate, and not at all without one."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if scenario is None or out_dir is None:
            require_launch_config(context)
        sc = scenario or _scenario_from(context)
        out = out_dir or Path(str(context.run_config.get("out-dir", f"runs/{sc.name}")))
        # Flower's deployment grid sleeps 3 s between polls for replies: poll promptly instead
        resume = _flag(context, "resume")
        prompt = PromptGrid(grid)
        # horizontal rounds are few (one per round, not per batch) and run Flower's own workflows
        # (SecAgg+): they stay on Flower; the data plane carries the vertical protocols' steps
        use_dataplane = _flag(context, "dataplane") and sc.mode != "horizontal"
        server = start_dataplane(context) if use_dataplane else None
        hub = start_hub(context) if server is not None else None
        try:
            run_grid: Grid = (
                prompt
                if server is None
                else DataPlaneGrid(prompt, server, _dataplane_parties(context), run_config=dict(context.run_config))
            )
            simulated = scenario is not None and out_dir is not None
            coordinate(run_grid, context, sc, Path(out), resume=resume, stream=hub or (simulated and stream))
        finally:
            if hub is not None:
                hub.stop()
            if server is not None:
                server.stop()

    return app


def _flag(context: Context, key: str) -> bool:
    return str(context.run_config.get(key, "")).lower() in ("1", "true", "yes")


def _dataplane_parties(context: Context) -> dict[int, str]:
    """Flower node id -> party, from the deployment's registered node ids (run config ``node-ids``)."""
    ids = json.loads(str(context.run_config.get("node-ids") or "{}"))
    return {int(nid): str(party) for party, nid in ids.items()}


def start_hub(context: Context) -> ExchangeHub | None:
    """The TLS exchange hub of a deployment (the data plane's certificate); None if it cannot start."""
    rc = context.run_config
    try:
        cert = Path(str(rc["dataplane-cert"])).read_bytes()
        key = Path(str(rc["dataplane-key"])).read_bytes()
        return ExchangeHub(host=str(rc.get("dataplane-host", "127.0.0.1")), cert_pem=cert, key_pem=key)
    except Exception as exc:  # noqa: BLE001 - training then relays one step per exchange, and says so
        log.warning("exchange hub not started (one relay step per exchange): %s: %s", type(exc).__name__, exc)
        return None


def start_dataplane(context: Context) -> DataPlaneServer | None:
    """The coordinator's data-plane server, from the run config; None (Flower only) if it cannot start.

    ``dataplane-cert``/``dataplane-key``: a TLS certificate the federation CA signed (deploy local
    reuses the SuperLink's); ``dataplane-node-keys``: JSON party -> PEM of its provisioned node key.
    """
    from fedcredit.ledger import load_public_key

    rc = context.run_config
    try:
        keys = {p: load_public_key(path) for p, path in json.loads(str(rc["dataplane-node-keys"])).items()}
        cert = Path(str(rc["dataplane-cert"])).read_bytes()
        key = Path(str(rc["dataplane-key"])).read_bytes()
        return DataPlaneServer(keys, cert, key, int(context.run_id), host=str(rc.get("dataplane-host", "127.0.0.1")))
    except Exception as exc:  # noqa: BLE001 - the run goes on over Flower alone, and says so
        log.warning("data plane not started (every message goes over Flower): %s: %s", type(exc).__name__, exc)
        return None


app = build_server_app()
