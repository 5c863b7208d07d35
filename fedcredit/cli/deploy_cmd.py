"""``fedcredit keys ...`` and ``fedcredit deploy local``: real deployment on Flower's Deployment Engine.

``keys init`` makes a federation's key material (CA, coordinator TLS certificate, SuperNode auth
keys, ledger and egress signing keys); ``keys party`` makes one party's keys on its own machine.
``deploy local`` runs a scenario with every party as its own SuperNode process over TLS with
SuperNode authentication, verifies the ledger and stops every process. See docs/deploy.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from fedcredit.cli.output import fail, plain

if TYPE_CHECKING:
    from fedcredit.config import Scenario

console = Console()
log = logging.getLogger(__name__)

keys_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Key material for a real deployment (TLS, SuperNode auth, ledger signing).",
)
deploy_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Run scenarios on Flower's Deployment Engine (separate processes, TLS, auth).",
)


@keys_app.command("init")
def keys_init(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the keys (created, mode 0700)."),
    parties: str = typer.Option(..., "--parties", help="Comma-separated party names, e.g. credit_centre,bank_a."),
    hosts: str = typer.Option(
        "127.0.0.1", "--hosts", help="Comma-separated IPs / DNS names of the coordinator (certificate SAN)."
    ),
) -> None:
    """Make a CA, the coordinator's TLS certificate and ledger key, and every party's keys."""
    from fedcredit.deploy.keys import KeyMaterialError, init_keys

    try:
        fk = init_keys(out, parties.split(","), hosts=hosts)
    except KeyMaterialError as exc:
        raise fail(console, exc) from None
    t = Table(title=plain(f"federation keys in {fk.root} (all files mode 0600)"))
    t.add_column("what")
    t.add_column("file")
    rows = [
        ("CA certificate (give to every party)", str(fk.ca_cert)),
        ("coordinator TLS certificate / key", f"{fk.server_cert} / {fk.server_key.name}"),
        ("coordinator ledger key / public", f"{fk.ledger_key} / {fk.ledger_pub.name}"),
    ]
    for name, pk in fk.parties.items():
        rows.append((f"{name}: SuperNode auth key / public", f"{pk.auth_key} / {pk.auth_pub.name}"))
        rows.append((f"{name}: egress-log key / public", f"{pk.egress_key} / {pk.egress_pub.name}"))
    for what, files in rows:
        t.add_row(plain(what), plain(files))
    console.print(t)
    console.print(f"certificate valid for: {', '.join(fk.hosts)}", markup=False)


@keys_app.command("party")
def keys_party(
    out: Path = typer.Option(..., "--out", "-o", help="Directory (the party's own machine)."),
    name: str = typer.Option(..., "--name", help="This party's name in the scenario, e.g. bank_a."),
) -> None:
    """Make one party's SuperNode auth key pair and egress-log key (private keys stay here)."""
    from fedcredit.deploy.keys import KeyMaterialError, fingerprint, make_party_keys

    try:
        pk = make_party_keys(out, name)
    except KeyMaterialError as exc:
        raise fail(console, exc) from None
    typer.echo(
        f"send these two PUBLIC files to the coordinator's operator:\n"
        f"  {pk.auth_pub}  (sha256 {fingerprint(pk.auth_pub)[:16]}...)\n"
        f"  {pk.egress_pub}  (sha256 {fingerprint(pk.egress_pub)[:16]}...)\n"
        f"keep {pk.auth_key} and {pk.egress_key} on this machine."
    )


def _parse_data(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        party, sep, path = item.partition("=")
        if not sep or not party or not path:
            raise typer.BadParameter(f"--data expects PARTY=PATH, got {item!r}")
        out[party.strip()] = path.strip()
    return out


@deploy_app.command("local")
def deploy_local_cmd(
    scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario TOML (configs/*.toml)."),
    out: Path = typer.Option(Path("runs/deploy"), "--out", "-o", help="Run directory (must not hold a run)."),
    keys: Path = typer.Option(
        None, "--keys", help="Keys from `fedcredit keys init` (default: OUT/keys, made if absent)."
    ),
    data: list[str] = typer.Option([], "--data", help="PARTY=PATH: a party's data source (repeatable)."),
    run_timeout: float = typer.Option(3600.0, "--run-timeout", help="Seconds before the run is stopped."),
    resume: Path = typer.Option(
        None,
        "--resume",
        help="Continue the interrupted vertical run in this run directory from its last checkpoint "
        "(replaces --out; the ledger records the interruption and the resumption).",
    ),
    dataplane: bool = typer.Option(
        True,
        "--dataplane/--no-dataplane",
        help="Relay protocol messages over the coordinator's TLS data-plane stream that each node service "
        "dials (default), or every message through Flower.",
    ),
) -> None:
    """Run a scenario with each party as its own Flower SuperNode process (TLS + node auth)."""
    from fedcredit import config as fconfig
    from fedcredit.config import ConfigError
    from fedcredit.deploy.keys import KeyMaterialError
    from fedcredit.deploy.local import DeployError, DeployOptions, Interrupted, deploy_local
    from fedcredit.progress import LedgerProgress
    from fedcredit.runtime import run_log

    if resume is not None:
        out = resume
    opts = DeployOptions(
        scenario=scenario,
        out=out,
        keys=keys,
        data=_parse_data(data),
        run_timeout=run_timeout,
        resume=resume is not None,
        dataplane=dataplane,
    )
    try:
        loaded = fconfig.load(scenario)
        if resume is None and (out / "ledger.sqlite").exists():  # checked again by deploy_local, before run.log
            raise DeployError(f"{out} already holds a run (ledger.sqlite); choose another --out")
        console.print(
            f"deploying {plain(scenario)} (SuperLink + one SuperNode per party; logs in {plain(out)}/logs, "
            f"this command's in {plain(out)}/run.log)",
            markup=False,
        )
        with run_log(out), LedgerProgress(out, loaded, console):
            summary = deploy_local(opts)
    except Interrupted as exc:
        console.print(f"[yellow]{plain(exc)}[/] -- every process was stopped")
        raise typer.Exit(130) from None
    except (DeployError, KeyMaterialError, ConfigError) as exc:
        raise fail(console, exc, label="deployment failed:") from None
    if (out / "ledger.sqlite").exists():
        _save_scenario(loaded, out)
        from fedcredit.cli.simulate_cmd import write_run_report  # the one report writer of every run

        summary["report"] = write_run_report(out)
    _print(summary)
    status = summary["status"]
    if status.get("status") != "completed":
        raise fail(console, status.get("error"), 1, label="run failed:")
    if not (summary.get("verification") or {}).get("ok"):
        console.print("[red]ledger verification failed[/]")
        raise typer.Exit(1)


def _save_scenario(scenario: Scenario, out: Path) -> None:
    """Keep the scenario text with the run for its report (the ledger holds its hash)."""
    path = out / "scenario.toml"
    if not path.exists():
        path.write_text(scenario.source_text, encoding="utf-8")


def _print(summary: dict) -> None:
    status = summary["status"]
    out = Path(summary["out"])
    mpath = out / "metrics.json"
    if mpath.exists():
        m = json.loads(mpath.read_text())
        if "auc" in m:
            console.print(
                f"[bold]federated model[/] (test set): AUC {m['auc']:.4f}  KS {m['ks']:.4f}  Gini {m['gini']:.4f}"
            )
    lat = summary.get("latency", {})
    console.print(
        f"run {summary.get('run_id')}: {status.get('status')} in {summary.get('timings', {}).get('run_s')} s "
        f"(whole deployment {summary.get('wall_seconds')} s)",
        markup=False,
    )
    console.print(
        f"Flower round trips: {lat.get('flower_round_trips')} in all "
        f"(by phase {lat.get('round_trips_by_phase')}), median {lat.get('seconds_per_round_trip_median')} s each",
        markup=False,
    )
    if lat.get("dataplane_round_trips") is not None:
        console.print(
            f"transport: {lat.get('transport_flower_round_trips')} through Flower (introduction, phase starts, final "
            f"head), {lat.get('dataplane_round_trips')} over the data plane (streams: {lat.get('dataplane_streams')})",
            markup=False,
        )
    console.print(
        f"training: {lat.get('train_round_trips_per_epoch')} round trips and "
        f"{lat.get('train_wall_seconds_per_epoch')} s wall time per epoch "
        f"({lat.get('epochs')} epoch(s), key exchange included)",
        markup=False,
    )
    v = summary.get("verification") or {}
    console.print(
        "ledger: "
        + ("[green]verified[/]" if v.get("ok") else "[red]NOT verified[/]")
        + f" ({v.get('records')} records; egress matched {v.get('egress_matched')})"
    )
    for e in v.get("errors", []):
        console.print(f"  [red]{plain(e)}[/]")
    console.print(
        f"processes left running: {len(summary.get('left_running', []))}; summary in {out / 'deploy.json'}",
        markup=False,
    )
    if summary.get("report"):
        console.print(f"report: [bold]{plain(summary['report'])}[/]")


def register(app: typer.Typer) -> None:
    """Called from fedcredit.cli.main._register()."""
    app.add_typer(keys_app, name="keys", help="Key material for a real deployment.")
    app.add_typer(deploy_app, name="deploy", help="Run on Flower's Deployment Engine (TLS, node auth).")
