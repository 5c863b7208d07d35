"""One self-contained HTML page from an audit report: inline CSS, no script, no network.

Every value goes through :func:`html.escape`; the page shows sizes and hashes, never payloads.
"""

from __future__ import annotations

import html
import json
from typing import Any

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{font-size:.85em}
.ok{color:#060;font-weight:bold}.bad{color:#a00;font-weight:bold}
.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c060}
details{margin:.3em 0}
"""


def _e(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True)
    return html.escape("" if value is None else str(value))


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    v = report["verification"]
    verdict = f'<span class="{"ok" if v["ok"] else "bad"}">{_e(v["summary"])}</span>'
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>fedcredit audit: {_e(report.get('run_id'))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Audit of run {_e(report.get('run_id'))}</h1>",
        f"<p>Verification verdict: {verdict}</p>",
    ]
    if report.get("consent_demo_mode"):
        parts.append(
            '<p class="warn"><b>Consent demo mode:</b> consent tokens came from the public demo issuer; '
            "they do not represent real authorisations.</p>"
        )
    parts.append("<h2>Run</h2>")
    parts.append(
        _table(
            [{k: report.get(k) for k in ("scenario", "mode", "purpose", "config_hash", "code_version")}],
            ["scenario", "mode", "purpose", "config_hash", "code_version"],
        )
    )
    parts.append("<h2>Participants</h2>")
    coord = {
        "party": "coordinator",
        "role": "relay + ledger",
        "egress_key_fingerprint": report.get("coordinator_key_fingerprint"),
        "egress_log": f"key source: {report.get('coordinator_key_source')}",
    }
    parts.append(
        _table(
            [coord, *report["participants"]],
            ["party", "role", "rows", "features", "egress_key_fingerprint", "egress_log"],
        )
    )
    parts.append("<h2>Consent</h2>")
    for c in report["consent"]:
        parts.append(
            _table(
                [c],
                [
                    "bank",
                    "centre",
                    "purpose",
                    "mode",
                    "checked",
                    "accepted",
                    "refused",
                    "categories",
                    "revocation_lists",
                ],
            )
        )
        parts.append("<p>By issuer (fingerprints of trusted issuer keys: " + _e(c.get("issuers")) + ")</p>")
        parts.append(
            _table(
                [{"issuer": k, **v} for k, v in (c.get("by_issuer") or {}).items()], ["issuer", "accepted", "refused"]
            )
        )
    if not report["consent"]:
        parts.append("<p class='bad'>No consent_check record: this run used no verified consent.</p>")
    parts.append("<h2>Phases: what crossed which boundary</h2>")
    for ph in report["phases"]:
        parts.append(
            f"<h3>{_e(ph['phase'])}</h3><p>{_e(ph['steps'])} relay step(s), ledger records "
            f"#{_e(ph['first_seq'])}..#{_e(ph['last_seq'])}, {_e(ph['messages_total'])} message(s)</p>"
        )
        parts.append(_table(ph["boundaries"], ["boundary", "messages", "bytes"]))
        parts.append(
            f"<details><summary>payload hashes (first {len(ph['messages'])})</summary>"
            + _table(ph["messages"], ["step", "sender", "recipient", "kind", "size", "sha256"])
            + "</details>"
        )
    parts.append("<h2>Events</h2>")
    parts.append(_table(report["events"], ["seq", "kind", "ts"]))
    parts.append("<h2>Verification</h2>")
    parts.append(_table([v], ["ok", "records", "intact", "complete", "egress_logs"]))
    if v["errors"]:
        parts.append("<ul>" + "".join(f"<li class='bad'>{_e(e)}</li>" for e in v["errors"]) + "</ul>")
    if v["warnings"]:
        parts.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in v["warnings"]) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
