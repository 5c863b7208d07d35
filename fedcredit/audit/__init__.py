"""The auditor's view of a run directory: :func:`fedcredit.audit.report.build_report` and
:func:`fedcredit.audit.html.render_html` (``fedcredit audit RUN_DIR``)."""

from fedcredit.audit.html import render_html
from fedcredit.audit.report import build_report

__all__ = ["build_report", "render_html"]
