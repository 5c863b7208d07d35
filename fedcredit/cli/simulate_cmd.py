"""``fedcredit simulate SCENARIO --out DIR``: a whole joint-modelling run in Flower's simulation engine.

Every party is a virtual Flower SuperNode running the real ClientApp, the coordinator the real
ServerApp; what differs from deployment is only the transport. Afterwards the command adds the
centralised reference to ``metrics.json``, verifies the ledger against every node's egress log,
writes ``report.html`` and prints a short summary; while it runs, a progress line follows the
ledger and the per-step log goes to ``DIR/run.log``. It refuses to reuse a directory that holds
an earlier run's ledger.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fedcredit import config
from fedcredit.cli.output import fail, plain
from fedcredit.config.sections import DataSettings, SimulationSettings

console = Console()
log = logging.getLogger(__name__)


def run_simulation_scenario(
    scenario_path: Path | config.Scenario, out: Path, *, quiet_flower: bool = True, reference: bool = True
) -> dict:
    """Run a scenario (file or loaded) in simulation; return the status dict (also in ``out/status.json``)."""
    scenario = scenario_path if isinstance(scenario_path, config.Scenario) else config.load(scenario_path)
    out = Path(out)
    if (out / "ledger.sqlite").exists():
        raise FileExistsError(
            f"{out} already holds a run (ledger.sqlite); choose another --out so the earlier run's ledger is not lost"
        )
    out.mkdir(parents=True, exist_ok=True)
    save_scenario(scenario, out)
    ensure_synthetic_data(scenario)
    from fedcredit.runtime import flower_environment

    flower_environment(out / ".flower")
    # Every simulated node already gets its own core from Ray; nested worker pools inside the
    # actors would only oversubscribe the machine.
    os.environ.setdefault("FEDCREDIT_PAILLIER_WORKERS", "1")
    from flwr.simulation import run_simulation

    # Flower has its own console handler; do not echo its (DEBUG) records through ours too.
    logging.getLogger("flwr").propagate = False
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if quiet_flower:
        logging.getLogger("flwr").setLevel(logging.WARNING)

    from parties.client_app import build_client_app
    from parties.common.peers import provision
    from parties.server_app import build_server_app

    provision(scenario, out)  # each node's operator configuration (node key, peers' keys), not the coordinator's

    sim = scenario.settings(SimulationSettings)
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": sim.client_cpus, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": sim.ray_cpus or os.cpu_count() or 2,
            "include_dashboard": False,
            "logging_level": "error",
            "log_to_driver": True,
        },
    }
    # a streamed step (parties.common.exchange) needs both its nodes running at once: Ray must have
    # room for two ClientApp actors, else training relays one step per exchange
    slots = int((sim.ray_cpus or os.cpu_count() or 2) // sim.client_cpus)
    if slots < 2:
        log.warning("Ray runs one party at a time (%d CPU slot): training is not streamed", slots)
    t0 = time.time()
    run_simulation(
        server_app=build_server_app(scenario, out, stream=slots >= 2),
        client_app=build_client_app(scenario, out),
        num_supernodes=len(scenario.parties),
        backend_config=backend_config,
    )
    status_path = out / "status.json"
    if not status_path.exists():
        raise RuntimeError(f"the coordinator did not finish: no {status_path} (see {out / 'run.log'})")
    status = json.loads(status_path.read_text())
    status["wall_seconds"] = round(time.time() - t0, 2)
    return finish_run(scenario, out, status, reference=reference)


def save_scenario(scenario: config.Scenario, out: Path) -> None:
    """Keep the scenario text with the run (its hash is in the ledger's run-start record)."""
    (out / "scenario.toml").write_text(scenario.source_text, encoding="utf-8")


def finish_run(scenario: config.Scenario, out: Path, status: dict, *, reference: bool = True) -> dict:
    """After any simulated run: centralised reference, ledger verification, report; returns the status."""
    status_path = out / "status.json"
    if reference and status.get("status") == "completed":
        add_reference(scenario, out)
    status["verification"] = verify_run(out)
    status_path.write_text(json.dumps(status, indent=2, sort_keys=True))
    status["report"] = write_run_report(out)
    status_path.write_text(json.dumps(status, indent=2, sort_keys=True))
    return status


def write_run_report(out: Path) -> str | None:
    """Write ``out/report.html``; a report that cannot be built is logged, never fails the run."""
    from fedcredit.report import ReportError, write_report

    try:
        return str(write_report(out))
    except ReportError as exc:
        log.warning("no report for %s: %s", out, exc)
    except Exception:  # noqa: BLE001 - a report bug must not turn a finished, verified run into a failure
        log.exception("no report for %s: building it failed", out)
    return None


def ensure_synthetic_data(scenario: config.Scenario) -> None:
    """Generate the scenario's synthetic SME tables (``[data] synthetic = DIR``) if DIR is missing."""
    data = scenario.settings(DataSettings)
    if data.synthetic is None:
        return
    directory = Path(data.synthetic)
    if (directory / "credit_centre.csv").exists() or (directory / "credit_centre.parquet").exists():
        return
    from fedcredit.data.synth import generate

    stats = generate(data.firms, data.banks, directory, seed=data.seed, fmt="csv")
    log.info("generated synthetic SMEs in %s: centre %d rows", directory, stats.centre_rows)


def add_reference(scenario: config.Scenario, out: Path) -> None:
    """Add the pooled-data reference to ``metrics.json`` and keep its test scores for the report."""
    path = out / "metrics.json"
    if scenario.mode == "scorecard":  # pooled scorecards on the run's rows and bins
        from fedcredit.scorecard_run import add_scorecard_reference

        add_scorecard_reference(scenario, out)
        return
    metrics = json.loads(path.read_text())
    if scenario.mode in ("vertical-lr", "secureboost"):
        import numpy as np

        from fedcredit.reference import vertical_reference

        scores: dict = {}
        bank = scenario.parties_with_role("bank")[0].name
        kept = out / "nodes" / bank / "test_scores.npz"  # the bank's own record of the rows it used
        used = None
        if kept.exists():
            with np.load(kept, allow_pickle=False) as z:
                used = set(z["aligned_ids"].tolist()) if "aligned_ids" in z.files else None
        metrics["centralised"] = vertical_reference(scenario, scores, used)
        if used is not None:
            metrics["centralised_rows"] = len(used)
        np.savez_compressed(out / "reference_scores.npz", **scores)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))


def verify_run(out: Path) -> dict:
    from fedcredit.ledger import load_public_key, verify

    egress = sorted((out / "nodes").glob("*/egress.sqlite"))
    report = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"), egress=egress)
    return {
        "ok": report.ok,
        "records": report.records,
        "errors": report.errors[:5],
        "egress_logs": [str(p) for p in egress],
    }


def simulate(
    scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario TOML (configs/*.toml)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory (must not hold a run)."),
    verbose_flower: bool = typer.Option(False, "--flower-logs", help="Show Flower's own INFO logs."),
    deliver: bool = typer.Option(
        False,
        "--deliver-demo-tokens",
        help="Demo mode: first verify the demo tokens into the centre's store, as an identity service "
        "delivers real ones ahead of runs (what `fedcredit consent demo` does; `make demo` uses it).",
    ),
) -> None:
    """Run a full joint-modelling scenario in Flower's simulation engine."""
    try:
        if deliver:
            _deliver_demo_tokens(scenario, out)
        status = run_with_progress(scenario, out, quiet_flower=not verbose_flower)
    except (config.ConfigError, FileExistsError, RuntimeError) as exc:
        raise fail(console, exc) from None
    _print_summary(out, status)
    if status.get("status") != "completed":
        raise fail(console, status.get("error"), 1, label="run failed:")
    if "verification" in status and not status["verification"]["ok"]:
        raise fail(console, status["verification"]["errors"], 1, label="ledger verification failed:")


def _deliver_demo_tokens(scenario_path: Path, out: Path) -> None:
    """``--deliver-demo-tokens``: before the run (the machine is otherwise idle, so verification
    uses every core), what each delivery cost goes to ``out/demo_delivery.json``."""
    import dataclasses

    from parties.vertical.consent import ConsentSetupError, deliver_demo_tokens

    if (Path(out) / "ledger.sqlite").exists():
        raise FileExistsError(f"{out} already holds a run (ledger.sqlite); choose another --out")
    scenario = config.load(scenario_path)
    ensure_synthetic_data(scenario)
    try:
        done = deliver_demo_tokens(scenario)
    except ConsentSetupError as exc:
        raise config.ConfigError(str(exc)) from None
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "demo_delivery.json").write_text(json.dumps([dataclasses.asdict(d) for d in done], indent=2))
    for d in done:
        console.print(
            f"demo tokens {plain(d.bank)} -> {plain(d.centre)}: {d.tokens} (issued or reused in {d.issue_s:.2f} s), "
            f"{d.added} newly verified in {d.verify_s:.2f} s"
        )


def run_with_progress(scenario_path: Path, out: Path, *, quiet_flower: bool = True) -> dict:
    """:func:`run_simulation_scenario` with a live progress line and the INFO log in ``out/run.log``."""
    from fedcredit.progress import LedgerProgress
    from fedcredit.runtime import run_log

    scenario = config.load(scenario_path)  # errors in the file are reported before anything starts
    if (Path(out) / "ledger.sqlite").exists():
        raise FileExistsError(
            f"{out} already holds a run (ledger.sqlite); choose another --out so the earlier run's ledger is not lost"
        )
    console.print(f"running {plain(scenario_path)} ({scenario.mode}) in Flower's simulation engine; log: {out}/run.log")
    terminal = logging.INFO if not quiet_flower else logging.WARNING

    with run_log(Path(out), terminal_level=terminal), LedgerProgress(Path(out), scenario, console):
        return run_simulation_scenario(scenario_path, out, quiet_flower=quiet_flower)


def _print_summary(out: Path, status: dict) -> None:
    mpath = out / "metrics.json"
    m: dict = {}
    if mpath.exists():
        m = json.loads(mpath.read_text())
        t = Table(title=plain(f"{status.get('scenario')} ({status.get('mode')}): test set"))
        for col in ("model", "AUC", "KS", "Gini"):
            t.add_column(col)
        if "auc" in m:
            t.add_row("[bold]federated[/]", f"{m['auc']:.4f}", f"{m['ks']:.4f}", f"{m['gini']:.4f}")
        for name, r in sorted(m.get("centralised", {}).items()):
            if not isinstance(r, dict):
                continue
            t.add_row(plain(f"centralised {name}"), f"{r['auc']:.4f}", f"{r['ks']:.4f}", f"{r['gini']:.4f}")
        if "auc" in m:
            console.print(t)
            c = m.get("consent")
            if c:
                refused = ", ".join(f"{k} {v}" for k, v in sorted(c.get("refused", {}).items())) or "none"
                demo = " [DEMO issuer: not real authorisations]" if c.get("mode") == "demo" else ""
                console.print(
                    f"consent (checked by the centre){demo}: {c.get('accepted')} of {c.get('checked')} firms "
                    f"accepted; refused: {refused}",
                    markup=False,
                )
            console.print(
                f"seconds: {m.get('seconds')}  (training {m.get('train_seconds')}), "
                f"Flower round trips: {m.get('flower_round_trips')}",
                markup=False,
            )
        if m.get("mode") == "inference":
            refused = ", ".join(f"{k} {v}" for k, v in sorted(m.get("refused", {}).items())) or "none"
            console.print(
                f"applicants {m.get('applicants')}: scored {m.get('scored')}, refused by consent "
                f"({refused}), unknown at the centre {m.get('unknown_at_centre')}; "
                f"scores in {m.get('scores_path')}",
                markup=False,
            )
            console.print(
                f"seconds: {m.get('seconds')}, Flower round trips: {m.get('flower_round_trips')}", markup=False
            )
    if "verification" not in status:
        console.print(f"outputs in {out}/ (metrics.json, status.json; no ledger: {m.get('simulation')})", markup=False)
        return
    v = status.get("verification", {})
    console.print(
        f"ledger: {plain(status.get('ledger'))} — "
        + ("[green]verified[/]" if v.get("ok") else "[red]NOT verified[/]")
        + f" ({v.get('records')} records, {len(v.get('egress_logs', []))} egress logs)"
    )
    console.print(
        f"outputs in {out}/ (metrics.json, status.json, ledger.sqlite, run.log, nodes/*/model.json)", markup=False
    )
    if status.get("report"):
        console.print(f"report: [bold]{plain(status['report'])}[/]")
