"""Test helpers for signed logs: verify a run directory as an auditor does, and forge a stretch of
a signed log consistently, as an attacker with a key would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedcredit.ledger import VerificationReport, load_public_key, verify
from fedcredit.ledger.keys import sign_hash
from fedcredit.ledger.records import record_hash


def rewrite_signed(
    conn: sqlite3.Connection,
    records: Sequence[Any],
    key: Any,
    edit: Callable[[Any, str], str] = lambda rec, text: text,
) -> None:
    """Rewrite consecutive ``records`` with payloads passed through ``edit(record, text)``, and
    every hash, chain link and signature rebuilt with ``key``: an internally consistent forgery
    whose only flaw is the signer. The caller commits."""
    prev = records[0].prev_hash
    for rec in records:
        text = edit(rec, rec.payload_text)
        h = record_hash(
            log=rec.log,
            run_id=rec.run_id,
            seq=rec.seq,
            kind=rec.kind,
            ts=rec.ts,
            writer=rec.writer,
            prev_hash=prev,
            payload_text=text,
        )
        conn.execute(
            "UPDATE fedcredit_records SET payload=?, prev_hash=?, hash=?, sig=? WHERE seq=?",
            (text, prev, h, sign_hash(key, h), rec.seq),
        )
        prev = h


def verified(out: Path) -> VerificationReport:
    """``ledger verify`` of run directory ``out``: its ledger under the coordinator's key, cross-checked
    against every node's egress log."""
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
