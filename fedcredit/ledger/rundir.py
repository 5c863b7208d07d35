"""Verify a whole run directory: the ledger, every node log, and the heads the nodes co-signed.

Why: the ledger alone is signed by the coordinator, which could rewrite and re-sign it; a ledger
checked with the key it declares itself proves nothing about who wrote it. Here the auditor
discovers everything from the run directory and trusts the coordinator key only as far as the
parties vouch for it:

* the coordinator key (``--pubkey`` or ``coordinator_pub.pem``) must be the key every node pinned
  when it co-signed heads (its node log says which);
* the node keys come from the operators' configuration (``--node-pubkey``, ``keys/peers.json``
  of a simulation, or the ``nodes/<party>/peers.json`` a deployment gave each SuperNode), never
  from the ledger;
* every party declared in ``run_start`` (and every node log present) must have a node log ending
  with its signed ``egress_end`` record (else it was truncated);
* the ledger's records must match every tree head all parties co-signed
  (:func:`fedcredit.ledger.cosign.check_cosigned`), so removing, altering, reordering or
  truncating a co-signed record fails even when the coordinator re-signed the whole chain.

Then the existing checks (:func:`fedcredit.ledger.verify`: chain, signatures, egress/ingress
cross-checks) run with those keys. A run that stopped still verifies up to its failure: the
coordinator writes ``run_end`` and gives every party the final head on the failure path too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedcredit.ledger.cosign import NodeHeads, check_cosigned, node_heads
from fedcredit.ledger.keys import load_public_key, public_key_from_hex, public_key_hex
from fedcredit.ledger.records import EGRESS_COSIGNED, EGRESS_END, LedgerError, LedgerFileError
from fedcredit.ledger.store import read_records
from fedcredit.ledger.verify import VerificationReport, verify

LEDGER_FILE = "ledger.sqlite"
COORDINATOR_PUB = "coordinator_pub.pem"


def _node_keys_from_files(run_dir: Path) -> tuple[dict[str, Ed25519PublicKey], str | None]:
    """Operator-configured node keys found in the run directory, and the file(s) they came from."""
    files = [run_dir / "keys" / "peers.json"]
    files += sorted((run_dir / "nodes").glob("*/peers.json"))
    keys: dict[str, Ed25519PublicKey] = {}
    used: list[str] = []
    for f in files:
        if not f.exists():
            continue
        raw = json.loads(f.read_text())
        for name, hexkey in raw.items():
            k = public_key_from_hex(str(hexkey))
            if name in keys and public_key_hex(keys[name]) != public_key_hex(k):
                raise LedgerError(f"{f}: node {name!r} has a different key than in {used[0]}")
            keys[name] = k
        used.append(str(f))
    return keys, (", ".join(used) if used else None)


def verify_run_dir(
    run_dir: str | os.PathLike[str],
    *,
    public_key: Ed25519PublicKey | None = None,
    node_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> VerificationReport:
    """Verify ``run_dir`` as described in the module docstring; never raises for bad files."""
    d = Path(run_dir)
    ledger = d / LEDGER_FILE
    problems: list[str] = []
    if public_key is None:
        pem = d / COORDINATOR_PUB
        if pem.exists():
            try:
                public_key = load_public_key(pem)
            except LedgerError as exc:
                problems.append(f"coordinator key {pem}: {exc}")
        else:
            problems.append(f"coordinator key missing: no {pem} and no --pubkey")
    keys: dict[str, Ed25519PublicKey] = dict(node_keys or {})
    source = "--node-pubkey" if keys else None
    if not keys:
        try:
            keys, source = _node_keys_from_files(d)
        except (OSError, ValueError, LedgerError) as exc:
            problems.append(f"node keys: {exc}")
    logs = {p.parent.name: p for p in sorted((d / "nodes").glob("*/egress.sqlite"))}
    report = verify(ledger, public_key=public_key, egress=list(logs.values()), egress_public_keys=keys)
    if not report.readable:
        return report
    try:
        records = read_records(ledger)
        declared: Mapping[str, Any] = records[0].payload.get("parties", {}) if records else {}
    except (LedgerFileError, ValueError, AttributeError):
        records, declared = [], {}
    expected = sorted(set(declared) | set(logs))
    for p in expected:
        if p not in logs:
            problems.append(f"node log of party {p!r} missing: no {d / 'nodes' / p / 'egress.sqlite'}")
        if p not in keys:
            problems.append(
                f"no operator-configured key for party {p!r} (keys/peers.json, nodes/*/peers.json or --node-pubkey)"
            )
    heads: list[NodeHeads] = []
    for p, path in logs.items():
        try:
            node_records = read_records(path)
        except LedgerFileError as exc:
            problems.append(f"node log {path}: {exc}")
            continue
        nh = node_heads(p, node_records, EGRESS_COSIGNED, EGRESS_END)
        if not nh.ended:
            last = node_records[-1] if node_records else None
            problems.append(
                f"node log {path} truncated: no signed {EGRESS_END} record at the end"
                + (f" (last record #{last.seq} is {last.kind!r})" if last is not None else "")
            )
        elif str(node_records[-1].payload.get("status", "")).startswith("refused"):
            problems.append(f"node log {path} record #{node_records[-1].seq}: {node_records[-1].payload['status']}")
        heads.append(nh)
    if expected and public_key is not None and all(p in keys for p in expected):
        errors, checked = check_cosigned(records, heads, public_key, {p: keys[p] for p in expected})
        problems.extend(errors)
        report.heads_checked = checked
        if not errors:
            report.key_source = "co-signed"
    elif not expected:
        report.warnings.append("no party took part (the run stopped before introductions): nothing was co-signed")
    for msg in problems:
        report._error(msg)
    report.node_key_source = source
    report.intact = report.intact and not problems
    report.ok = report.intact and report.complete
    return report
