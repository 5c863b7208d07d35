"""The centre re-checks consent at inference query time (issue 15, item 2), not only the bank.

Planted first: a bank that skips its own check (or lies about it) sends every applicant; the
centre's re-check must refuse the ones whose token does not authorise the query, answer none of
them, count them by reason and keep their ids out of its query log, book and the ledger.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.data import uscc
from fedcredit.ledger import read_records
from fedcredit.ledger.rundir import verify_run_dir
from parties.in_process import run_scenario_in_process
from protocols.common.party import run_local
from protocols.inference import BankModelPart, CentreModelPart, InferenceBank, InferenceCentre
from protocols.inference.quota import QueryBook

N_ROWS = 500


def _pair(check, tokens: list[str], book: QueryBook | None = None):
    rng = np.random.default_rng(3)
    ids = uscc.generate(20, rng)
    Xb, Xc = rng.normal(size=(20, 2)), rng.normal(size=(20, 3))
    bank = InferenceBank(
        "b", "c", session="s", batch=0, purpose="loan_decision",
        model=BankModelPart.from_dict({"type": "hetero_lr", "weights": [0.1, -0.2, 0.3]}),
        ids=ids, X=Xb, refusals=[None] * 20, tokens=tokens,
    )  # fmt: skip
    centre = InferenceCentre(
        "c", "b", session="s", batch=0, model=CentreModelPart.from_dict({"type": "hetero_lr", "weights": [1, 2, 3]}),
        ids=ids, features=Xc, consent=check, book=book, model_digest="m",
    )  # fmt: skip
    return bank, centre, ids


def test_centre_refuses_what_its_own_check_rejects_even_if_the_bank_sent_it():
    seen: list[tuple[list[str], bytes]] = []

    def check(usccs, bundle):
        seen.append((list(usccs), bundle))
        return ["expired" if t == b"old" else ("no_token" if not t else "") for t in bundle.split(b"\n")]

    tokens = [f"tok{i}" for i in range(20)]
    tokens[2], tokens[5], tokens[9] = "old", "old", ""
    bank, centre, ids = _pair(check, tokens, QueryBook(entries=[]))
    run_local({"b": bank, "c": centre})
    assert seen and seen[0][0] == ids and seen[0][1] == "\n".join(tokens).encode()  # all, in order
    _, scores, status = bank.results()
    for i in (2, 5, 9):
        assert status[i] == "refused_consent_at_centre" and np.isnan(scores[i])
    assert sum(s == "scored" for s in status) == 17
    c = centre.counts()
    assert c["consent_refused"] == {"expired": 2, "no_token": 1} and c["found"] == 17 and c["not_found"] == 0
    assert bank.counts()["refused_by_centre"] == 3
    queried, _ = centre.query_log()
    refused_ids = {ids[i] for i in (2, 5, 9)}
    assert not refused_ids & set(queried) and len(queried) == 17
    assert not refused_ids & {e.uscc for e in centre.book_entries()}
    assert not any(u in json.dumps(c) for u in refused_ids)


def test_without_a_consent_check_the_centre_answers_as_before():
    bank, centre, _ = _pair(None, [""] * 20)
    run_local({"b": bank, "c": centre})
    assert "consent_refused" not in centre.counts() and centre.counts()["found"] == 20


def test_a_lax_bank_is_stopped_by_the_centre_in_a_real_run(tmp_path, monkeypatch):
    """Plant: the bank's own re-check is switched off; expired and forged tokens then reach the centre."""
    import parties.vertical.inference_phase as phase

    write_vertical_subset(tmp_path, N_ROWS)
    parties = f"""[parties.bank]
role = "bank"
data = "{tmp_path / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{tmp_path / "centre.csv"}"
"""
    demo = f'mode = "demo"\ndemo_dir = "{tmp_path / "demo"}"'
    train = f"""
[run]
name = "train"
mode = "vertical-lr"
{parties}[consent]
{demo}
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
"""
    assert run_scenario_in_process(config.loads(train), tmp_path / "train")["status"] == "completed"
    monkeypatch.setattr(phase, "_refusals", lambda node, ids: ([None] * len(ids), {"lax": True}))
    inference = f"""
[run]
name = "inf"
mode = "inference"
purpose = "loan_decision"
{parties}[inference]
model_dir = "{tmp_path / "train"}"
batch_size = 1000
[consent]
{demo}
demo_expired = 0.1
demo_forged = 0.05
"""
    status = run_scenario_in_process(config.loads(inference), tmp_path / "inf")
    assert status["status"] == "completed", status
    m = json.loads((tmp_path / "inf/metrics.json").read_text())
    assert m["refused"] == {} and set(m["refused_by_centre"]) == {"expired", "forged"}, m
    n_refused = sum(m["refused_by_centre"].values())
    assert m["refused_by_centre"]["expired"] > 25
    scores = pd.read_csv(tmp_path / "inf/nodes/bank/scores.csv", dtype={"uscc": str, "status": str})
    refused = set(scores.loc[scores["status"] == "refused_consent_at_centre", "uscc"])
    assert len(refused) == n_refused
    log = pd.read_csv(tmp_path / "inf/nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert not refused & set(log["uscc"]) and len(log) == N_ROWS - n_refused
    ledger = (tmp_path / "inf/ledger.sqlite").read_bytes()
    assert not any(u.encode() in ledger for u in refused)  # counts only
    inf = [r.payload for r in read_records(tmp_path / "inf/ledger.sqlite") if r.kind == "inference"]
    assert inf[0]["refused_by_centre"] == m["refused_by_centre"]
    rep = verify_run_dir(tmp_path / "inf")  # the inference run's heads were co-signed too
    assert rep.ok and rep.key_source == "co-signed", rep.errors
