"""Paths the suite did not run: training with a real consent registry file from disk, and
inference for an enterprise whose consent was revoked after the model was trained.

The registry file is written here by hand, row by row, with the expected outcome of each row
decided in this file (not by :class:`fedcredit.consent.ConsentRegistry`, the code under test):
the run must keep exactly the consented enterprises in PSI, count the refusals by reason in the
ledger, and an applicant revoked after training must be refused at inference, never queried at
the centre, while the same applicant is scored when the revocation is absent (positive control).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.data.schema import LABEL_COLUMN
from fedcredit.ledger import load_public_key, read_records, verify
from parties.in_process import run_scenario_in_process

N_ROWS = 1000
DAY = "2025-06-01"
HEADER = "uscc,bank,purpose,scope,valid_from,valid_until,revoked_at"
# rows of the bank's table -> what the registry says about them for credit_risk_modelling on DAY
OK, REVOKED, EXPIRED, WRONG_PURPOSE = range(0, 800), range(800, 820), range(820, 835), range(835, 845)
# 845 .. 999: no record at all (enough consented rows for a validation set of >= 32)


def _registry_rows(ids: list[str]) -> list[str]:
    rows = [HEADER]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2024-01-01,2026-12-31," for i in OK]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2024-01-01,2026-12-31,2025-03-01" for i in REVOKED]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2023-01-01,2025-01-31," for i in EXPIRED]
    rows += [f"{ids[i]},bank,loan_decision,*,2024-01-01,2026-12-31," for i in WRONG_PURPOSE]
    return rows


def _parties(d: Path) -> str:
    return f"""[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("consent-file")
    bank, centre = write_vertical_subset(d, N_ROWS)
    ids = list(bank["uscc"])
    (d / "consents.csv").write_text("\n".join(_registry_rows(ids)) + "\n", encoding="utf-8")
    text = f"""
[run]
name = "consent-file"
mode = "vertical-lr"
purpose = "credit_risk_modelling"
seed = 42
{_parties(d)}[consent]
registry = "{d / "consents.csv"}"
at = "{DAY}"
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
"""
    out = d / "train"
    status = run_scenario_in_process(config.loads(text), out)
    return {"dir": d, "out": out, "status": status, "bank": bank, "centre": centre, "ids": ids}


def test_training_with_a_consent_file_from_disk_keeps_exactly_the_consented(trained):
    assert trained["status"]["status"] == "completed", trained["status"]
    records = read_records(trained["out"] / "ledger.sqlite")
    consent = next(r.payload for r in records if r.kind == "consent_check")
    assert consent["checked"] == N_ROWS and consent["allowed"] == len(OK)
    assert consent["refused"] == {
        "revoked": len(REVOKED),
        "expired": len(EXPIRED),
        "wrong_purpose": len(WRONG_PURPOSE),
        "no_consent": N_ROWS - 845,
    }
    psi = next(r.payload for r in records if r.kind == "psi")
    assert psi["bank"]["intersection"] == len(OK)  # the centre holds all N_ROWS: only consent removed rows
    assert json.loads((trained["out"] / "metrics.json").read_text())["rows_intersection"] == len(OK)
    blob = (trained["out"] / "ledger.sqlite").read_bytes()
    refused = [trained["ids"][i] for i in [*REVOKED, *EXPIRED, *WRONG_PURPOSE]]
    assert not any(u.encode() in blob for u in refused)  # counts only, never the refused ids
    out = trained["out"]
    rep = verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
    assert rep.ok and rep.complete, rep.errors


def _inference(trained: dict, tmp: Path, applicants: list[str], revoke: set[str]) -> tuple[pd.DataFrame, Path]:
    """Score ``applicants`` (bank customers the model was trained on) on DAY, with loan_decision
    consent for all of them, revoked on 2025-05-01 (after training) for those in ``revoke``."""
    tmp.mkdir(parents=True, exist_ok=True)
    b = trained["bank"].set_index("uscc").loc[applicants].reset_index().drop(columns=[LABEL_COLUMN])
    b.to_csv(tmp / "applicants.csv", index=False)
    rows = [HEADER] + [
        f"{u},bank,loan_decision,*,2024-01-01,2026-12-31,{'2025-05-01' if u in revoke else ''}" for u in applicants
    ]
    (tmp / "consents.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    text = f"""
[run]
name = "inf-after-revocation"
mode = "inference"
purpose = "loan_decision"
{_parties(trained["dir"])}[inference]
model_dir = "{trained["out"]}"
applicants = "{tmp / "applicants.csv"}"
batch_size = 20
[consent]
registry = "{tmp / "consents.csv"}"
at = "{DAY}"
"""
    status = run_scenario_in_process(config.loads(text), tmp / "run")
    assert status["status"] == "completed", status
    scores = pd.read_csv(tmp / "run/nodes/bank/scores.csv", dtype={"uscc": str, "status": str}).set_index("uscc")
    return scores, tmp / "run"


def test_inference_after_a_revocation_refuses_and_never_queries_the_centre(trained, tmp_path):
    assert trained["status"]["status"] == "completed", trained["status"]
    applicants = [trained["ids"][i] for i in (3, 17, 42, 101, 222, 333)]
    victim = applicants[2]
    # positive control: without the revocation the victim is scored like the others
    before, run0 = _inference(trained, tmp_path / "before", applicants, set())
    assert (before["status"] == "scored").all() and np.isfinite(before.loc[victim, "score"])
    log0 = pd.read_csv(run0 / "nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert victim in set(log0["uscc"])
    # revoked on 2025-05-01, after training: refused at inference, never sent to the centre
    after, run1 = _inference(trained, tmp_path / "after", applicants, {victim})
    assert after.loc[victim, "status"] == "refused_consent:revoked" and np.isnan(after.loc[victim, "score"])
    others = [u for u in applicants if u != victim]
    assert (after.loc[others, "status"] == "scored").all()
    np.testing.assert_allclose(after.loc[others, "score"], before.loc[others, "score"], rtol=1e-12)
    log1 = pd.read_csv(run1 / "nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert sorted(log1["uscc"]) == sorted(others)
    inf = [r.payload for r in read_records(run1 / "ledger.sqlite") if r.kind == "inference"]
    assert sum(r["refused"].get("revoked", 0) for r in inf) == 1
