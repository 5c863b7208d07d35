"""`fedcredit ledger ...`: exit codes, first bad record named, clear errors without tracebacks."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from fedcredit.cli.ledger_cmd import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCOMPLETE, app
from fedcredit.data import uscc
from fedcredit.ledger import generate_signing_key, save_public_key
from fedcredit.ledger.demo import copy_run, write_demo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-template")
    run = write_demo_run(d, steps=2)
    save_public_key(run.coordinator_key, d / "coordinator.pub")
    return run


@pytest.fixture()
def run(template, tmp_path):
    r = copy_run(template, tmp_path)
    (tmp_path / "coordinator.pub").write_bytes((template.ledger_path.parent / "coordinator.pub").read_bytes())
    return r


def _verify(run, *extra):
    args = ["verify", str(run.ledger_path), "--pubkey", str(run.ledger_path.parent / "coordinator.pub")]
    for p in run.egress_paths.values():
        args += ["--egress", str(p)]
    return runner.invoke(app, args + list(extra))


def _no_traceback(res):
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output


def test_verify_ok(run):
    res = _verify(run)
    assert res.exit_code == 0, res.output
    assert "OK: 7 records" in res.output and "matched" in res.output


def test_verify_json(run):
    res = _verify(run, "--json")
    assert res.exit_code == 0
    rep = json.loads(res.output)
    assert rep["ok"] and rep["records"] == 7 and rep["key_source"] == "given"


def test_verify_names_first_bad_record(run):
    conn = sqlite3.connect(run.ledger_path)
    conn.execute("UPDATE fedcredit_records SET ts='2020-01-01T00:00:00.000000Z' WHERE seq=4")
    conn.commit()
    conn.close()
    res = _verify(run)
    assert res.exit_code == EXIT_FAILED
    assert "first bad record #4" in res.output and "hash does not match" in res.output
    _no_traceback(res)


def test_verify_truncated_needs_allow_incomplete(run):
    conn = sqlite3.connect(run.ledger_path)
    conn.execute("DELETE FROM fedcredit_records WHERE seq >= 5")
    conn.commit()
    conn.close()
    res = _verify(run)
    assert res.exit_code == EXIT_INCOMPLETE and "INCOMPLETE" in res.output
    assert _verify(run, "--allow-incomplete").exit_code == 0


def test_verify_wrong_public_key(run, tmp_path):
    save_public_key(generate_signing_key(), tmp_path / "other.pub")
    res = runner.invoke(app, ["verify", str(run.ledger_path), "--pubkey", str(tmp_path / "other.pub")])
    assert res.exit_code == EXIT_FAILED
    assert "not signed by the expected key" in res.output and "first bad record #0" in res.output
    _no_traceback(res)


def test_verify_egress_mismatch(run):
    conn = sqlite3.connect(run.egress_paths["bank"])
    conn.execute("DELETE FROM fedcredit_records WHERE seq = (SELECT max(seq) FROM fedcredit_records)")
    conn.commit()
    conn.close()
    res = _verify(run)
    assert res.exit_code == EXIT_FAILED and "is not in the node's own egress log" in res.output


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: None, "ledger file not found"),
        (lambda p: p.write_text("garbage" * 20), "not an SQLite database"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE x(y)").connection.commit(),
            "without a fedcredit ledger table",
        ),
    ],
)
def test_bad_ledger_files(tmp_path, setup, match):
    p = tmp_path / "bad.db"
    setup(p)
    for cmd in (["verify", str(p)], ["show", str(p)], ["export", str(p), "--format", "csv"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == EXIT_BAD_INPUT, (cmd, res.output)
        assert match in res.output
        _no_traceback(res)


def test_bad_pubkey_file(run, tmp_path):
    (tmp_path / "junk.pem").write_text("-----BEGIN NONSENSE-----\n")
    res = runner.invoke(app, ["verify", str(run.ledger_path), "--pubkey", str(tmp_path / "junk.pem")])
    assert res.exit_code == EXIT_BAD_INPUT and "not a PEM public key" in res.output
    _no_traceback(res)
    res = runner.invoke(app, ["verify", str(run.ledger_path), "--node-pubkey", "bank"])
    assert res.exit_code == EXIT_BAD_INPUT and "NODE=PEM_FILE" in res.output


def test_show(run):
    res = runner.invoke(app, ["show", str(run.ledger_path)])
    assert res.exit_code == 0
    for kind in ("run_start", "consent_check", "psi", "step", "model_release", "run_end"):
        assert kind in res.output
    res = runner.invoke(app, ["show", str(run.egress_paths["bank"]), "--kind", "sent"])
    assert res.exit_code == 0 and "egress" in res.output


def test_export_jsonl_and_csv(run, tmp_path):
    res = runner.invoke(app, ["export", str(run.ledger_path), "--format", "jsonl"])
    assert res.exit_code == 0
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert [x["seq"] for x in lines] == list(range(7))
    assert lines[0]["payload"]["parties"]["bank"]["role"] == "bank"
    out = tmp_path / "l.csv"
    res = runner.invoke(app, ["export", str(run.ledger_path), "--format", "csv", "--out", str(out)])
    assert res.exit_code == 0
    import csv as _csv

    rows = list(_csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 7 and rows[3]["kind"] == "step" and len(rows[3]["sig"]) == 128
    res = runner.invoke(app, ["export", str(run.ledger_path), "--format", "xml"])
    assert res.exit_code == EXIT_BAD_INPUT and "jsonl or csv" in res.output


def test_consent_command(tmp_path):
    a, b = uscc.from_index(1), uscc.from_index(2)
    good = tmp_path / "c.csv"
    good.write_text(
        "uscc,bank,purpose,scope,valid_from,valid_until,revoked_at\n"
        f"{a},bank-a,loan_decision,*,2024-01-01,2026-01-01,\n"
        f"{b},bank-a,loan_decision,*,2024-01-01,2026-01-01,2025-02-01\n"
    )
    res = runner.invoke(app, ["consent", str(good), "--at", "2025-06-01"])
    assert res.exit_code == 0, res.output
    # one row per status with its count ("valid" alone would also match "invalid")
    rows = {tuple(c.strip() for c in line.split("│")[1:-1]) for line in res.output.splitlines() if "│" in line}
    assert rows == {("bank-a", "loan_decision", "revoked", "1"), ("bank-a", "loan_decision", "valid", "1")}
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "uscc,bank,purpose,scope,valid_from,valid_until,revoked_at\n"
        f"{a},bank-a,loan_decision,*,2024-01-01,2023-01-01,\n"
    )
    res = runner.invoke(app, ["consent", str(bad)])
    assert res.exit_code == EXIT_BAD_INPUT
    assert "line 2, column 'valid_until'" in res.output
    _no_traceback(res)


def test_registered_in_main_cli():
    from fedcredit.cli.main import app as main_app

    res = runner.invoke(main_app, ["ledger", "--help"])
    assert res.exit_code == 0 and "verify" in res.output


def test_demo_command(tmp_path):
    res = runner.invoke(app, ["demo", str(tmp_path / "d")])
    assert res.exit_code == 0
    assert (tmp_path / "d" / "coordinator.pub").exists()
    res = runner.invoke(app, ["demo", str(tmp_path / "d")])
    assert res.exit_code == EXIT_BAD_INPUT
