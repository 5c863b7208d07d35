"""The run report: one self-contained HTML file per run (``RUN_DIR/report.html``).

``write_report(run_dir)`` reads what the run left behind (metrics, status, ledger, the label
holder's test scores, the pooled reference's scores in simulation) and writes a page of tables
and embedded matplotlib plots; ``party=NAME`` writes NAME's own report (only what NAME holds or
was published to it) into ``nodes/NAME/report.html``; ``party="coordinator"`` the coordinator's
view (only what the parties published) into ``report-coordinator.html``.
"""

from __future__ import annotations

from pathlib import Path

from fedcredit.report.builder import SECTION_IDS
from fedcredit.report.run_data import COORDINATOR, ReportError, RunData, load_run

__all__ = ["SECTION_IDS", "ReportError", "RunData", "load_run", "write_report"]


def write_report(run_dir: Path | str, *, party: str | None = None, out: Path | str | None = None) -> Path:
    """Write the report of ``run_dir`` (for ``party``, or the harness); return its path."""
    from fedcredit.report.builder import render

    run_dir = Path(run_dir)
    data = load_run(run_dir, party)
    if out is None:
        if party is None:
            out = run_dir / "report.html"
        elif party == COORDINATOR:
            out = run_dir / "report-coordinator.html"
        else:
            out = run_dir / "nodes" / party / "report.html"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(out)
    return out
