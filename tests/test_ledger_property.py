"""Property test: every random attacker mutation of a valid ledger is rejected by ``verify``.

Mutations act on the SQLite file directly (as an attacker with write access would): change one
character of one field of one record, change a seq, delete, swap, duplicate, truncate, re-sign a
tampered suffix with a foreign key (hashes and chain recomputed so only the key is wrong), splice a
record from another run signed by the same coordinator key. The same mutations hit the nodes'
egress logs, which must then fail the cross-check. ``ok`` must be False for each, and only
truncation may leave the ledger ``intact`` (it is then reported as incomplete).
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_support import rewrite_signed

from fedcredit.ledger import canonical_json, generate_signing_key, read_records, verify
from fedcredit.ledger.demo import copy_run, write_demo_run

TEXT_FIELDS = ["log", "run_id", "kind", "ts", "writer", "prev_hash", "payload", "hash", "sig"]
CHARS = string.ascii_letters + string.digits + '{}[]":,.-_ é'
MUTATIONS = ["byte", "seq", "delete", "swap", "duplicate", "truncate", "resign", "splice"]


def load_reference_verifier():
    """The independent verifier printed in docs/ledger.md §7 (so the doc cannot drift)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ledger.md").read_text(encoding="utf-8")
    section = doc[doc.index("## 7.") :]
    code = section[section.index("```python") + len("```python") :]
    code = code[: code.index("```")]
    namespace: dict = {}
    exec(compile(code, "docs/ledger.md#7", "exec"), namespace)
    return namespace["reference_verify"]


REFERENCE = load_reference_verifier()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    good = write_demo_run(tmp_path_factory.mktemp("good"), run_id="run-A", steps=3)
    other = write_demo_run(
        tmp_path_factory.mktemp("other"),
        run_id="run-B",
        steps=3,
        coordinator_key=good.coordinator_key,
        node_keys=good.node_keys,
    )
    return good, other, tmp_path_factory.mktemp("work")


def _column(rec, field: str):
    return rec.payload_text if field == "payload" else getattr(rec, field)


def _mutate(conn: sqlite3.Connection, data, records, donor_records, foreign_key) -> str:
    n = len(records)
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    i = data.draw(st.integers(0, n - 1), label="record")
    if kind == "byte":
        field = data.draw(st.sampled_from(TEXT_FIELDS), label="field")
        old = _column(records[i], field)
        pos = data.draw(st.integers(0, len(old) - 1), label="pos")
        ch = data.draw(st.sampled_from(CHARS).filter(lambda c: c != old[pos]), label="char")
        conn.execute(f"UPDATE fedcredit_records SET {field}=? WHERE seq=?", (old[:pos] + ch + old[pos + 1 :], i))
    elif kind == "seq":
        new = data.draw(st.integers(-5, 3 * n).filter(lambda s: s not in range(n)), label="new seq")
        conn.execute("UPDATE fedcredit_records SET seq=? WHERE seq=?", (new, i))
    elif kind == "delete":
        conn.execute("DELETE FROM fedcredit_records WHERE seq=?", (i,))
        if i == n - 1:
            kind = "truncate"  # deleting the last record is a truncation
    elif kind == "swap":
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
        conn.execute("UPDATE fedcredit_records SET seq=-1 WHERE seq=?", (i,))
        conn.execute("UPDATE fedcredit_records SET seq=? WHERE seq=?", (i, j))
        conn.execute("UPDATE fedcredit_records SET seq=? WHERE seq=-1", (j,))
    elif kind == "duplicate":
        at = data.draw(st.integers(0, n), label="insert at")
        conn.execute("UPDATE fedcredit_records SET seq=seq+1000 WHERE seq>=?", (at,))
        conn.execute("UPDATE fedcredit_records SET seq=seq-999 WHERE seq>=1000")
        src = i + 1 if i >= at else i
        conn.execute(
            "INSERT INTO fedcredit_records SELECT ?, log, run_id, kind, ts, writer, prev_hash,"
            " payload, hash, sig FROM fedcredit_records WHERE seq=?",
            (at, src),
        )
    elif kind == "truncate":
        keep = data.draw(st.integers(0, n - 1), label="keep")
        conn.execute("DELETE FROM fedcredit_records WHERE seq>=?", (keep,))
    elif kind == "resign":
        # Tamper with record i's payload, then rebuild hashes/chain/signatures from i on with a
        # foreign key: every hash is consistent, only the signer is wrong.
        value = data.draw(st.integers(0, 9), label="value")

        def tamper(rec, text: str) -> str:
            payload = json.loads(text)
            if rec.seq == i:
                payload["tampered"] = value
            return canonical_json(payload)

        rewrite_signed(conn, records[i:], foreign_key, tamper)
    elif kind == "splice":
        d = donor_records[data.draw(st.integers(0, len(donor_records) - 1), label="donor")]
        conn.execute("DELETE FROM fedcredit_records WHERE seq=?", (i,))
        conn.execute(
            "INSERT INTO fedcredit_records VALUES (?,?,?,?,?,?,?,?,?,?)",
            (i, d.log, d.run_id, d.kind, d.ts, d.writer, d.prev_hash, d.payload_text, d.hash, d.sig),
        )
    return kind


@settings(
    max_examples=int(os.environ.get("FEDCREDIT_LEDGER_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_every_random_mutation_is_rejected(runs, data):
    good, other, work = runs
    target = data.draw(st.sampled_from(["ledger", "ledger", "bank", "centre"]), label="file")
    source = good.ledger_path if target == "ledger" else good.egress_paths[target]
    donor = other.ledger_path if target == "ledger" else other.egress_paths[target]
    case = copy_run(good, tempfile.mkdtemp(dir=work))
    victim = case.ledger_path if target == "ledger" else case.egress_paths[target]
    conn = sqlite3.connect(victim)
    kind = _mutate(conn, data, read_records(source), read_records(donor), generate_signing_key())
    conn.commit()
    conn.close()
    rep = verify(
        case.ledger_path, public_key=good.coordinator_key.public_key(), egress=list(case.egress_paths.values())
    )
    assert not rep.ok, f"{kind} mutation of {target} was accepted"
    if target == "ledger":  # the documented reference verifier must reject it too
        _ok_up_to, complete, error = REFERENCE(
            str(case.ledger_path), good.coordinator_key.public_key().public_bytes_raw()
        )
        assert error is not None or not complete, f"reference verifier accepted {kind}"
    if target != "ledger":
        assert not rep.intact and any("egress" in e for e in rep.errors), rep.errors
    elif kind != "truncate":
        assert not rep.intact and rep.errors and rep.first_bad is not None
    else:
        assert not rep.complete


def test_unmutated_copy_verifies(runs):
    good, _, work = runs
    case = copy_run(good, work / "plain")
    rep = verify(
        case.ledger_path, public_key=good.coordinator_key.public_key(), egress=list(case.egress_paths.values())
    )
    assert rep.ok, rep.errors
    assert REFERENCE(str(case.ledger_path)) == (7, True, None)
    assert REFERENCE(str(case.ledger_path), good.coordinator_key.public_key().public_bytes_raw()) == (7, True, None)
