"""`fedcredit audit RUN_DIR --out report.html [--json]`: the auditor's one-page view of a run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from fedcredit.cli.output import fail, plain

console = Console()


def audit(
    run_dir: Path = typer.Argument(
        ..., help="A run directory (ledger.sqlite, coordinator_pub.pem, nodes/*/egress.sqlite)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the self-contained HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (to stdout, or --out if .json)."),
) -> None:
    """Who took part, purpose, consent counts, what crossed which boundary, and the verdict."""
    from fedcredit.audit import build_report, render_html
    from fedcredit.audit.report import AuditError

    try:
        report = build_report(run_dir)
    except AuditError as exc:
        raise fail(console, exc) from None
    if as_json:
        text = json.dumps(report, indent=2, sort_keys=True)
        if out is not None and out.suffix == ".json":
            out.write_text(text)
        else:
            typer.echo(text)
    if out is not None and not (as_json and out.suffix == ".json"):
        out.write_text(render_html(report), encoding="utf-8")
        console.print(f"audit report written to {plain(out)}")
    v = report["verification"]
    console.print(("[green]" if v["ok"] else "[red]") + plain(v["summary"]) + "[/]", soft_wrap=True)
    if not v["ok"]:
        raise typer.Exit(1)
