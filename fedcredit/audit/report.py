"""What an auditor needs from a run directory, as one JSON-able dict (never a payload or an id).

Reads the coordinator's ledger (``ledger.sqlite`` or ``ledger.db``), its public key
(``coordinator_pub.pem``) and the nodes' egress logs (``nodes/*/egress.sqlite``), verifies them
with :func:`fedcredit.ledger.verify`, and summarises: who took part (key fingerprints), purpose,
consent counts by reason and issuer with the revocation-list versions, every phase with what
crossed which boundary (message counts, sizes, SHA-256 of each payload), and the verdict.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from fedcredit.ledger import LedgerFileError, load_public_key, read_records, verify

MAX_MESSAGES_PER_PHASE = 200  # the report lists at most this many payload hashes per phase


class AuditError(ValueError):
    """The run directory cannot be audited (no ledger); the message names what is missing."""


def fingerprint(hex_key: str | None) -> str | None:
    """SHA-256 of a raw public key given as hex, shortened to 16 hex digits (as shown to people)."""
    if not hex_key:
        return None
    try:
        return hashlib.sha256(bytes.fromhex(hex_key)).hexdigest()[:16]
    except ValueError:
        return None


def _ledger_path(run_dir: Path) -> Path:
    for name in ("ledger.sqlite", "ledger.db"):
        if (run_dir / name).exists():
            return run_dir / name
    raise AuditError(f"{run_dir}: no ledger.sqlite or ledger.db (is this a run directory?)")


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """The audit report of ``run_dir`` (raises :class:`AuditError` only if there is no ledger)."""
    rd = Path(run_dir)
    path = _ledger_path(rd)
    pub = rd / "coordinator_pub.pem"
    egress = sorted(rd.glob("nodes/*/egress.sqlite"))
    vr = verify(path, public_key=load_public_key(pub) if pub.exists() else None, egress=egress)
    try:
        records = read_records(path)
    except LedgerFileError as exc:
        raise AuditError(str(exc)) from None
    start = next((r for r in records if r.kind == "run_start"), None)
    sp = start.payload if start else {}
    participants = [
        {
            "party": name,
            "role": p.get("role"),
            "rows": p.get("rows"),
            "features": p.get("features"),
            "egress_key_fingerprint": fingerprint(p.get("egress_pubkey")),
            "egress_log": any(e.parent.name == name for e in egress),
        }
        for name, p in sorted((sp.get("parties") or {}).items())
    ]
    consent = [
        {
            k: r.payload.get(k)
            for k in (
                "bank",
                "centre",
                "purpose",
                "mode",
                "checked",
                "accepted",
                "refused",
                "by_issuer",
                "issuers",
                "revocation_lists",
                "categories",
                "audience",
                "at",
            )
        }  # fmt: skip
        for r in records
        if r.kind == "consent_check"
    ]
    phases: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.kind != "step":
            continue
        p = r.payload
        phase = str(p.get("step", "?")).split("/")[0]
        ph = phases.setdefault(
            phase,
            {
                "phase": phase,
                "steps": 0,
                "first_seq": r.seq,
                "last_seq": r.seq,
                "boundaries": defaultdict(lambda: [0, 0]),
                "messages": [],
            },
        )
        ph["steps"] += 1
        ph["last_seq"] = r.seq
        for m in p.get("messages", []):
            b = ph["boundaries"][f"{m.get('sender')} -> {m.get('recipient')}"]
            b[0] += 1
            b[1] += int(m.get("size", 0))
            if len(ph["messages"]) < MAX_MESSAGES_PER_PHASE:
                ph["messages"].append(
                    {k: m.get(k) for k in ("sender", "recipient", "kind", "size", "sha256")} | {"step": p.get("step")}
                )
    phase_list = []
    for ph in phases.values():
        bounds = [{"boundary": k, "messages": v[0], "bytes": v[1]} for k, v in sorted(ph["boundaries"].items())]
        phase_list.append({**ph, "boundaries": bounds, "messages_total": sum(b["messages"] for b in bounds)})
    events = [{"seq": r.seq, "kind": r.kind, "ts": r.ts} for r in records if r.kind not in ("step",)]
    return {
        "run_dir": str(rd),
        "run_id": start.run_id if start else None,
        "scenario": sp.get("scenario"),
        "mode": sp.get("mode"),
        "purpose": sp.get("purpose"),
        "config_hash": sp.get("config_hash"),
        "code_version": sp.get("code_version"),
        "coordinator_key_fingerprint": fingerprint(sp.get("coordinator_pubkey")),
        "coordinator_key_source": vr.key_source,
        "participants": participants,
        "consent": consent,
        "consent_demo_mode": any(c.get("mode") == "demo" for c in consent),
        "phases": phase_list,
        "events": events,
        "verification": {
            "ok": vr.ok,
            "summary": vr.summary(),
            "records": vr.records,
            "intact": vr.intact,
            "complete": vr.complete,
            "errors": list(vr.errors),
            "warnings": list(vr.warnings),
            "egress_logs": [str(e.relative_to(rd)) for e in egress],
        },
    }
