"""Co-signed tree heads in a real run, and ``fedcredit ledger verify RUN_DIR`` (issue 15, item 4).

Each attack is planted first: the coordinator rewrites its ledger *and re-signs the whole chain
with its own key* (the strongest forgery it can make alone), or a node log loses its tail, or a
key or log is removed; then the run directory must fail verification and name what changed.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from cosign_support import small_run
from typer.testing import CliRunner

from fedcredit.cli.ledger_cmd import app as cli_app
from fedcredit.ledger import load_private_key, read_records
from fedcredit.ledger.cosign import HeadIssuer, sent_by_step, witness
from fedcredit.ledger.keys import sign_hash
from fedcredit.ledger.records import Record, canonical_json, record_hash
from fedcredit.ledger.rundir import verify_run_dir
from fedcredit.ledger.transparency import TransparencyError


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    status, out = small_run(tmp_path_factory.mktemp("cosign"))
    assert status["status"] == "completed", status
    return out


def _rechain(records: list[Record], key) -> list[Record]:
    """``records`` renumbered, re-hashed, re-chained and re-signed with ``key``: a forgery only
    the co-signed heads can tell from the original."""
    out, prev = [], records[0].prev_hash if records else "0" * 64
    prev = "0" * 64
    for seq, r in enumerate(records):
        h = record_hash(
            log=r.log, run_id=r.run_id, seq=seq, kind=r.kind, ts=r.ts, writer=r.writer, prev_hash=prev,
            payload_text=r.payload_text,
        )  # fmt: skip
        out.append(Record(r.log, seq, r.run_id, r.kind, r.ts, r.writer, prev, r.payload_text, h, sign_hash(key, h)))
        prev = h
    return out


def _write_ledger(src: Path, dst: Path, records: list[Record]) -> None:
    shutil.copyfile(src, dst)
    conn = sqlite3.connect(dst)
    conn.execute("DELETE FROM fedcredit_records")
    cols = ("seq", "log", "run_id", "kind", "ts", "writer", "prev_hash", "payload", "hash", "sig")
    for r in records:
        conn.execute(
            f"INSERT INTO fedcredit_records ({', '.join(cols)}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (r.seq, r.log, r.run_id, r.kind, r.ts, r.writer, r.prev_hash, r.payload_text, r.hash, r.sig),
        )
    conn.commit()
    conn.close()


def _shadow(run: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A copy of the run directory (files copied, so a test may change any of them)."""
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns(*skip) if skip else None)
    return dst


def _altered(r: Record) -> Record:
    payload = json.loads(r.payload_text)
    payload["tampered"] = True
    return Record(r.log, r.seq, r.run_id, r.kind, r.ts, r.writer, r.prev_hash, canonical_json(payload), r.hash, r.sig)


def _names(errors: list[str], i: int) -> bool:
    """Some error names record ``i``: its number or a record range that holds it."""
    for e in errors:
        if re.search(rf"#{i}\b", e):
            return True
        for lo, hi in re.findall(r"a record in (\d+)\.\.(\d+)", e):
            if int(lo) <= i <= int(hi):
                return True
    return False


def test_every_party_cosigns_each_phase_boundary_and_the_run_dir_verifies(run):
    rep = verify_run_dir(run)
    assert rep.ok, rep.errors
    assert rep.key_source == "co-signed"
    phases = {json.loads(r.payload_text).get("step", "").split("/")[0] for r in read_records(run / "ledger.sqlite")}
    assert rep.heads_checked >= len(phases - {"", "hello"})  # one head per phase boundary, plus the final one
    for node in ("bank", "credit_centre"):
        recs = read_records(run / "nodes" / node / "egress.sqlite")
        assert recs[-1].kind == "egress_end"
        assert sum(r.kind == "cosigned" for r in recs) == rep.heads_checked


@pytest.mark.parametrize("mutation", ["remove", "alter", "swap"])
def test_any_single_record_rewritten_and_resigned_by_the_coordinator_is_named(run, tmp_path, mutation):
    """Exhaustive over records: every head was co-signed, so every record is covered."""
    key = load_private_key(run / "coordinator_key.pem")
    original = read_records(run / "ledger.sqlite")
    d = _shadow(run, tmp_path / "d")
    missed = []
    for i in range(len(original) - (mutation == "swap")):
        recs = list(original)
        if mutation == "remove":
            del recs[i]
        elif mutation == "alter":
            recs[i] = _altered(recs[i])
        else:
            recs[i], recs[i + 1] = recs[i + 1], recs[i]
        _write_ledger(run / "ledger.sqlite", d / "ledger.sqlite", _rechain(recs, key))
        rep = verify_run_dir(d)
        if rep.ok or not _names(rep.errors, i):
            missed.append((i, rep.errors[:3]))
    assert not missed, missed


def test_coordinator_truncating_its_ledger_is_caught(run, tmp_path):
    original = read_records(run / "ledger.sqlite")
    d = _shadow(run, tmp_path / "d")
    for n in range(1, len(original)):
        _write_ledger(run / "ledger.sqlite", d / "ledger.sqlite", original[:n])
        rep = verify_run_dir(d)
        assert not rep.ok and any("truncated" in e for e in rep.errors), (n, rep.errors)


@pytest.mark.parametrize("node", ["bank", "credit_centre"])
def test_truncating_any_node_log_is_caught_and_named(run, tmp_path, node):
    d = _shadow(run, tmp_path / "d")
    path = d / "nodes" / node / "egress.sqlite"
    n = len(read_records(path))
    for keep in range(n - 1, 0, -1):  # drop the last record, then one more, ...
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM fedcredit_records WHERE seq >= ?", (keep,))
        conn.commit()
        conn.close()
        rep = verify_run_dir(d)
        assert not rep.ok and any(f"nodes/{node}/egress.sqlite truncated" in e for e in rep.errors), (keep, rep.errors)


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("coordinator_pub.pem", "coordinator key missing"),
        ("nodes/bank/egress.sqlite", "node log of party 'bank' missing"),
        ("keys/peers.json", "no operator-configured key for party"),
    ],
)
def test_a_missing_key_or_log_fails(run, tmp_path, remove, named):
    d = _shadow(run, tmp_path / "d")
    (d / remove).unlink()
    rep = verify_run_dir(d)
    assert not rep.ok and any(named in e for e in rep.errors), rep.errors


def test_a_self_declared_key_alone_no_longer_passes(run, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    shutil.copyfile(run / "ledger.sqlite", d / "ledger.sqlite")
    res = CliRunner().invoke(cli_app, ["verify", str(d)])
    assert res.exit_code != 0, res.output
    assert "coordinator key missing" in res.output


def test_cli_run_dir_and_file_arguments(run):
    res = CliRunner().invoke(cli_app, ["verify", str(run)])
    assert res.exit_code == 0, res.output
    assert "co-signed" in res.output
    eg = [a for n in ("bank", "credit_centre") for a in ("--egress", str(run / "nodes" / n / "egress.sqlite"))]
    res = CliRunner().invoke(
        cli_app, ["verify", str(run / "ledger.sqlite"), "--pubkey", str(run / "coordinator_pub.pem"), *eg]
    )
    assert res.exit_code == 0, res.output


def test_a_node_refuses_a_head_whose_step_record_omits_what_it_sent(run):
    """Plant: the coordinator drops one of the bank's messages from a step record and re-signs."""
    key = load_private_key(run / "coordinator_key.pem")
    bank_key = load_private_key(run / "keys" / "bank" / "egress.key")
    ledger = read_records(run / "ledger.sqlite")
    own = sent_by_step(read_records(run / "nodes" / "bank" / "egress.sqlite"), cosigned_kind="")  # all
    honest = HeadIssuer("r", key, ledger).announce(["bank"])["bank"]
    witness(honest, party="bank", key=bank_key, coordinator=key.public_key(), last_head=None, own_sent=own)
    i = next(
        i
        for i, r in enumerate(ledger)
        if r.kind == "step" and any(m["sender"] == "bank" for m in r.payload["messages"])
    )
    p = ledger[i].payload
    p["messages"] = [m for m in p["messages"] if m["sender"] != "bank"][:0] + p["messages"][1:]
    forged = list(ledger)
    forged[i] = Record(*[getattr(ledger[i], f) for f in ("log", "seq", "run_id", "kind", "ts", "writer", "prev_hash")],
                       canonical_json(p), "", "")  # fmt: skip
    forged = _rechain(forged, key)
    bad = HeadIssuer("r", key, forged).announce(["bank"])["bank"]
    with pytest.raises(TransparencyError, match=rf"record #{i} .* omits"):
        witness(bad, party="bank", key=bank_key, coordinator=key.public_key(), last_head=None, own_sent=own)


def test_a_node_refuses_a_head_inconsistent_with_the_one_it_holds(run):
    """Plant: after a co-signed head, the coordinator forks its history (alters an early record)."""
    key = load_private_key(run / "coordinator_key.pem")
    bank_key = load_private_key(run / "keys" / "bank" / "egress.key")
    ledger = read_records(run / "ledger.sqlite")
    issuer = HeadIssuer("r", key, ledger[:5])
    first, _ = witness(
        issuer.announce(["bank"])["bank"], party="bank", key=bank_key, coordinator=key.public_key(),
        last_head=None, own_sent={},
    )  # fmt: skip
    forked = HeadIssuer("r", key, _rechain([_altered(ledger[0]), *ledger[1:]], key))
    forked.held["bank"] = 5
    with pytest.raises(TransparencyError, match="not consistent"):
        witness(
            forked.announce(["bank"])["bank"], party="bank", key=bank_key, coordinator=key.public_key(),
            last_head=first, own_sent={},
        )  # fmt: skip


def test_a_failed_run_still_verifies_up_to_its_failure(tmp_path):
    status, out = small_run(tmp_path, extra_centre='fail_at_step = "split/init"')
    assert status["status"] == "failed", status
    rep = verify_run_dir(out)
    assert rep.ok, rep.errors
    assert rep.heads_checked >= 2
    for node in ("bank", "credit_centre"):
        assert read_records(out / "nodes" / node / "egress.sqlite")[-1].kind == "egress_end"


def test_nodes_refuse_a_coordinator_that_forks_its_log_mid_run(tmp_path, monkeypatch):
    """Plant: from the third phase boundary on, the coordinator announces heads of a history in
    which record #1 was rewritten (and re-signed). Every node must refuse, the run stop naming
    the party and step, and each node log still end with a signed record saying why."""
    from fedcredit.ledger.cosign import HeadIssuer as Issuer
    from parties.common.recorder import LedgerRecorder

    calls = {"n": 0}
    real = LedgerRecorder.announce_heads

    def forking(self, parties):
        calls["n"] += 1
        if calls["n"] == 3:
            forged = _rechain([_altered(self.heads.records[0]), *self.heads.records[1:]], self.key)
            held = self.heads.held
            self.heads = Issuer(self.run_id, self.key, forged)
            self.heads.held = held
        return real(self, parties)

    monkeypatch.setattr(LedgerRecorder, "announce_heads", forking)
    status, out = small_run(tmp_path)
    assert calls["n"] >= 3
    assert status["status"] == "failed" and "not consistent" in status["error"], status
    for node in ("bank", "credit_centre"):
        recs = read_records(out / "nodes" / node / "egress.sqlite")
        assert recs[-1].kind == "egress_end" and "refused the final tree head" in recs[-1].payload["status"]
    rep = verify_run_dir(out)  # the ledger file is the honest one; the refusals are reported
    assert not rep.ok and any("refused the final tree head" in e for e in rep.errors), rep.errors
