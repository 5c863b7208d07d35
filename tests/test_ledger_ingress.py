"""``ledger verify`` with node ingress logs: every single removed or altered record of the ledger
or of any node log is caught and named, and a clean attacked-free run verifies (#13)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from fedcredit.ledger import load_public_key, read_records, verify
from parties.in_process import run_scenario_in_process
from simulations.attack_cases.coordinator import scenario


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ingress")
    status = run_scenario_in_process(scenario(work), work / "run")
    assert status["status"] == "completed", status
    return work / "run"


def _files(out: Path) -> list[Path]:
    return [out / "ledger.sqlite", *sorted((out / "nodes").glob("*/egress.sqlite"))]


def _verify(out: Path):
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )


def test_clean_run_verifies_with_ingress_matched_for_every_node(run_dir):
    report = _verify(run_dir)
    assert report.ok, report.errors
    by_node = {c.node: c for c in report.egress}
    assert set(by_node) == {"bank", "credit_centre"}
    assert all(c.received > 5 and c.refused == 0 for c in by_node.values())
    kinds = {r.kind for p in _files(run_dir)[1:] for r in read_records(p)}
    assert {"sent", "received"} <= kinds


@pytest.mark.parametrize("change", ["remove", "alter"])
def test_every_single_record_removed_or_altered_is_caught_and_named(run_dir, tmp_path, change):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for target in _files(run_dir):
        n = len(read_records(target))
        path = copy / target.relative_to(run_dir)
        for seq in range(n):
            shutil.copyfile(target, path)  # every other file stays pristine
            with sqlite3.connect(path) as conn:
                if change == "remove":
                    conn.execute("DELETE FROM fedcredit_records WHERE seq=?", (seq,))
                else:  # one character of the payload, as an editor would
                    (text,) = conn.execute("SELECT payload FROM fedcredit_records WHERE seq=?", (seq,)).fetchone()
                    i = len(text) // 2
                    edited = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :]
                    conn.execute("UPDATE fedcredit_records SET payload=? WHERE seq=?", (edited, seq))
            report = _verify(copy)
            where = f"{change} record #{seq} of {target.relative_to(run_dir)}"
            assert not report.ok, where
            problems = report.errors + ([] if report.complete else ["incomplete: run_end missing"])
            assert any("record #" in e or "run_end" in e for e in problems), (where, problems[:3])
        shutil.copyfile(target, path)


def test_cli_verifies_a_run_directory_and_names_a_removed_ingress_record(run_dir, tmp_path):
    from typer.testing import CliRunner

    from fedcredit.cli.ledger_cmd import EXIT_FAILED, app

    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(run_dir), "--pubkey", str(run_dir / "coordinator_pub.pem")])
    assert ok.exit_code == 0, ok.output
    assert "received" in ok.output and "OK:" in ok.output
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    centre_log = copy / "nodes" / "credit_centre" / "egress.sqlite"
    seq = next(r.seq for r in read_records(centre_log) if r.kind == "received")
    with sqlite3.connect(centre_log) as conn:
        conn.execute("DELETE FROM fedcredit_records WHERE seq=?", (seq,))
    bad = runner.invoke(app, ["verify", str(copy), "--pubkey", str(copy / "coordinator_pub.pem")])
    assert bad.exit_code == EXIT_FAILED, bad.output
    assert f"record #{seq + 1}" in bad.output  # the chain breaks at the record after the removed one
