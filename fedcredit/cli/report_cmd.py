"""``fedcredit report RUN_DIR [--party NAME]``: (re)write a run's self-contained HTML report.

Every simulate and deploy run already writes ``RUN_DIR/report.html``; this command rebuilds it
(e.g. after an upgrade, or for a run directory copied from elsewhere) and writes a party's own
report, showing only what that party holds or was published to it.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from fedcredit.cli.output import fail, plain

console = Console()


def report(
    run_dir: Path = typer.Argument(..., help="A run directory (holds ledger.sqlite)."),
    party: str = typer.Option(
        None,
        "--party",
        help="Write PARTY's own report (nodes/PARTY/report.html; 'coordinator': report-coordinator.html): only what it may see.",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the HTML (default: in the run directory)."),
) -> None:
    """Write the run's HTML report (plots embedded; opens offline)."""
    from fedcredit.report import ReportError, write_report

    try:
        path = write_report(run_dir, party=party, out=out)
    except (ReportError, OSError) as exc:
        raise fail(console, exc) from None
    console.print(f"report: [bold]{plain(path)}[/]")
