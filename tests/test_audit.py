"""`fedcredit audit`: one self-contained page with participants, consent counts, boundaries and
the verdict; no payload or id on it; a tampered ledger turns the verdict red."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import write_vertical_subset
from typer.testing import CliRunner

from fedcredit import config
from fedcredit.audit import build_report, render_html
from fedcredit.cli.main import app
from parties.in_process import run_scenario_in_process

N_ROWS = 800


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    b, _ = write_vertical_subset(d, N_ROWS)
    text = f"""
[run]
name = "audit"
mode = "vertical-lr"
[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
[consent]
mode = "demo"
demo_dir = "{d / "demo"}"
demo_revoked = 0.05
demo_forged = 0.05
[lr]
epochs = 1
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""
    status = run_scenario_in_process(config.loads(text), d / "run")
    assert status["status"] == "completed", status
    return {"dir": d / "run", "ids": list(b["uscc"])}


def test_report_names_parties_consent_and_boundaries_but_no_id(run_dir):
    rep = build_report(run_dir["dir"])
    assert rep["verification"]["ok"], rep["verification"]
    assert {p["party"] for p in rep["participants"]} == {"bank", "credit_centre"}
    assert all(len(p["egress_key_fingerprint"]) == 16 for p in rep["participants"])
    (c,) = rep["consent"]
    assert c["mode"] == "demo" and set(c["refused"]) == {"revoked", "forged"} and rep["consent_demo_mode"]
    assert c["revocation_lists"] == {"fedcredit-demo-issuer": 1}
    phases = {p["phase"]: p for p in rep["phases"]}
    assert {"align", "consent", "split", "hetero_lr", "score", "release"} <= set(phases)
    assert any(b["boundary"] == "bank -> credit_centre" and b["bytes"] > 0 for b in phases["consent"]["boundaries"])
    page = render_html(rep)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "Consent demo mode" in page and "revoked" in page
    blob = page + json.dumps(rep)
    assert not any(u in blob for u in run_dir["ids"])


def test_cli_writes_html_and_json_and_fails_on_a_tampered_ledger(run_dir, tmp_path):
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["audit", str(run_dir["dir"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    res = CliRunner().invoke(app, ["audit", str(run_dir["dir"]), "--json"])
    assert json.loads(res.output[: res.output.rindex("}") + 1])["run_id"]
    # tamper: change one consent count in a copy of the run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir["dir"], copy)
    con = sqlite3.connect(copy / "ledger.sqlite")
    con.execute(
        "update fedcredit_records set payload = replace(payload, '\"accepted\":', '\"accepted\":1') "
        "where kind = 'consent_check'"
    )
    con.commit()
    con.close()
    res = CliRunner().invoke(app, ["audit", str(copy), "--out", str(tmp_path / "bad.html")])
    assert res.exit_code == 1 and "FAILED" in res.output
    assert "class='bad'" in (tmp_path / "bad.html").read_text() or 'class="bad"' in (tmp_path / "bad.html").read_text()
