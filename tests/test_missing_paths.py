"""Paths the suite did not run: training in enforce mode with consent material read from disk
(issued tokens, the issuer's key, a revocation list, and the bank's own consent CSV as an extra
filter), and inference for an enterprise whose token was revoked after the model was trained.

The expected outcome of every row is decided in this file (which rows get a token, which token is
revoked or expired, what the bank's CSV says), not by the code under test: the bank's CSV must keep
its refused rows out of PSI (counted by reason under ``bank_registry``), the centre's token check
must refuse exactly the revoked and expired tokens among the rest (``consent_check``), and an
applicant whose token appears on a revocation list published after training must be refused at
inference and never queried at the centre, while it is scored when the list does not name it
(positive control).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.consent.demo import epoch
from fedcredit.consent.tokens import Issuer
from fedcredit.data.schema import LABEL_COLUMN
from fedcredit.ledger import load_public_key, read_records, verify
from parties.in_process import run_scenario_in_process

N_ROWS = 1000
DAY = "2025-06-01"
AT = epoch(dt.date.fromisoformat(DAY))
HEADER = "uscc,bank,purpose,scope,valid_from,valid_until,revoked_at"
# rows of the bank's table -> what the bank's consent CSV says about them for credit_risk_modelling on DAY
OK, REVOKED, EXPIRED, WRONG_PURPOSE = range(0, 800), range(800, 820), range(820, 835), range(835, 845)
# 845 .. 999: no record in the CSV at all
NO_TOKEN = range(790, 800)  # consented in the CSV, but the bank holds no token: never enter PSI
TOKEN_REVOKED = [i for i in range(790) if i % 40 == 0]  # token on the revocation list (CSV says fine)
TOKEN_EXPIRED = [i for i in range(790) if i % 40 == 1]  # token expired before DAY (CSV says fine)
# rows 845.. also get tokens that the revocation list names: the CSV refuses them first
TOKEN_REVOKED_BUT_CSV_REFUSED = [i for i in range(845, N_ROWS) if i % 40 == 0]
AUD = ("bank", "credit_centre")
CATS = ("credit_history", "registration")


def _registry_rows(ids: list[str]) -> list[str]:
    rows = [HEADER]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2024-01-01,2026-12-31," for i in OK]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2024-01-01,2026-12-31,2025-03-01" for i in REVOKED]
    rows += [f"{ids[i]},bank,credit_risk_modelling,*,2023-01-01,2025-01-31," for i in EXPIRED]
    rows += [f"{ids[i]},bank,loan_decision,*,2024-01-01,2026-12-31," for i in WRONG_PURPOSE]
    return rows


def _training_tokens(issuer: Issuer, ids: list[str]) -> list[str]:
    out = []
    for i, u in enumerate(ids):
        if i in NO_TOKEN:
            continue
        exp = AT - 86_400 if i in TOKEN_EXPIRED else AT + 86_400 * 30
        out.append(issuer.issue(u, AUD, "credit_risk_modelling", CATS, AT - 86_400 * 60, exp, token_id=f"t{i}"))
    return out


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
    issuer = Issuer.generate("eid-platform")
    (d / "consents.csv").write_text("\n".join(_registry_rows(ids)) + "\n", encoding="utf-8")
    (d / "tokens.txt").write_text("\n".join(_training_tokens(issuer, ids)) + "\n", encoding="utf-8")
    (d / "eid.pub.jwk").write_text(json.dumps(issuer.public.to_jwk()), encoding="utf-8")
    revoked = [f"t{i}" for i in [*TOKEN_REVOKED, *TOKEN_REVOKED_BUT_CSV_REFUSED]]
    (d / "rl-v2.jwt").write_text(issuer.revocation_list(2, revoked, AT - 86_400), encoding="utf-8")
    text = f"""
[run]
name = "consent-file"
mode = "vertical-lr"
purpose = "credit_risk_modelling"
seed = 42
{_parties(d)}[consent]
mode = "enforce"
tokens = "{d / "tokens.txt"}"
issuer_keys = ["{d / "eid.pub.jwk"}"]
revocations = ["{d / "rl-v2.jwt"}"]
store = "{d / "store.npz"}"
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
    return {"dir": d, "out": out, "status": status, "bank": bank, "ids": ids, "issuer": issuer, "revoked": revoked}


def test_training_with_a_consent_file_from_disk_keeps_exactly_the_consented(trained):
    assert trained["status"]["status"] == "completed", trained["status"]
    records = read_records(trained["out"] / "ledger.sqlite")
    consent = next(r.payload for r in records if r.kind == "consent_check")
    assert consent["mode"] == "enforce"
    # bank side, before PSI: firms without a token are dropped, then the bank's CSV filters the rest
    bank_side = consent["bank_side"]
    assert bank_side["bank_ids"] == N_ROWS and bank_side["with_token"] == N_ROWS - len(NO_TOKEN)
    csv_side = bank_side["bank_registry"]
    assert csv_side["checked"] == N_ROWS - len(NO_TOKEN)
    assert csv_side["allowed"] == len(OK) - len(NO_TOKEN)
    assert csv_side["refused"] == {
        "revoked": len(REVOKED),
        "expired": len(EXPIRED),
        "wrong_purpose": len(WRONG_PURPOSE),
        "no_consent": N_ROWS - 845,
    }
    # PSI: the centre holds all N_ROWS, so only the bank-side consent removed rows
    in_psi = len(OK) - len(NO_TOKEN)
    psi = next(r.payload for r in records if r.kind == "psi")
    assert psi["bank"]["intersection"] == in_psi
    # the centre's token check on the intersection: exactly the revoked and expired tokens refused
    assert consent["checked"] == in_psi
    assert consent["refused"] == {"revoked": len(TOKEN_REVOKED), "expired": len(TOKEN_EXPIRED)}
    assert consent["accepted"] == in_psi - len(TOKEN_REVOKED) - len(TOKEN_EXPIRED)
    metrics = json.loads((trained["out"] / "metrics.json").read_text())
    assert metrics["rows_psi"] == in_psi and metrics["rows_intersection"] == consent["accepted"]
    blob = (trained["out"] / "ledger.sqlite").read_bytes()
    refused = [trained["ids"][i] for i in [*REVOKED, *EXPIRED, *WRONG_PURPOSE, *TOKEN_REVOKED, *TOKEN_EXPIRED]]
    assert not any(u.encode() in blob for u in refused)  # counts only, never the refused ids
    out = trained["out"]
    rep = verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
    assert rep.ok and rep.complete, rep.errors


def _inference(trained: dict, tmp: Path, applicants: list[str], revoke: set[str]) -> tuple[pd.DataFrame, Path]:
    """Score ``applicants`` (bank customers the model was trained on) on DAY with a fresh
    loan_decision token each (and a loan_decision record in the bank's CSV), under a revocation
    list version 3, published after training, that names the tokens of those in ``revoke``."""
    tmp.mkdir(parents=True, exist_ok=True)
    issuer: Issuer = trained["issuer"]
    b = trained["bank"].set_index("uscc").loc[applicants].reset_index().drop(columns=[LABEL_COLUMN])
    b.to_csv(tmp / "applicants.csv", index=False)
    rows = [HEADER] + [f"{u},bank,loan_decision,*,2024-01-01,2026-12-31," for u in applicants]
    (tmp / "consents.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    tokens = [
        issuer.issue(u, AUD, "loan_decision", CATS, AT - 86_400, AT + 86_400 * 30, token_id=f"loan-{u}")
        for u in applicants
    ]
    (tmp / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    rl = issuer.revocation_list(3, [*trained["revoked"], *(f"loan-{u}" for u in revoke)], AT)
    (tmp / "rl-v3.jwt").write_text(rl, encoding="utf-8")
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
mode = "enforce"
tokens = "{tmp / "tokens.txt"}"
issuer_keys = ["{trained["dir"] / "eid.pub.jwk"}"]
revocations = ["{trained["dir"] / "rl-v2.jwt"}", "{tmp / "rl-v3.jwt"}"]
store = "{tmp / "store.npz"}"
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
    # revoked by the list published after training: refused at inference, never sent to the centre
    after, run1 = _inference(trained, tmp_path / "after", applicants, {victim})
    assert after.loc[victim, "status"] == "refused_consent:revoked" and np.isnan(after.loc[victim, "score"])
    others = [u for u in applicants if u != victim]
    assert (after.loc[others, "status"] == "scored").all()
    np.testing.assert_allclose(after.loc[others, "score"], before.loc[others, "score"], rtol=1e-12)
    log1 = pd.read_csv(run1 / "nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert sorted(log1["uscc"]) == sorted(others)
    (inf,) = [r.payload for r in read_records(run1 / "ledger.sqlite") if r.kind == "inference"]  # one batch
    assert inf["refused"] == {"revoked": 1} and inf["sent"] == len(others) and inf["scored"] == len(others)
    assert inf["consent"]["refused"] == {"revoked": 1} and inf["consent"]["accepted"] == len(others)
    assert inf["consent"]["revocation_lists"] == {"eid-platform": 3}  # the list published after training
    assert victim.encode() not in (run1 / "ledger.sqlite").read_bytes()  # counts only, never the id
