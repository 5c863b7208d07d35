"""A vertical run in enforce mode with real (non-demo) consent material: the centre refuses a
revoked, a forged and a missing-category token, the run trains on the rest, and a bank token
file that names no firm of the table keeps everyone out."""

from __future__ import annotations

import datetime as dt
import json

from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.consent.demo import epoch
from fedcredit.consent.tokens import Issuer
from fedcredit.ledger import read_records
from parties.in_process import run_scenario_in_process

N_ROWS = 600
DAY = dt.date(2026, 6, 1)


def test_enforce_mode_with_issued_tokens_revocation_list_and_issuer_key(tmp_path):
    b, _ = write_vertical_subset(tmp_path, N_ROWS)
    ids = list(b["uscc"])
    issuer, forger = Issuer.generate("eid-platform"), Issuer.generate("eid-platform")
    at = epoch(DAY)
    aud, cats = ("bank", "credit_centre"), ("credit_history", "registration")
    lines = []
    for i, u in enumerate(ids):
        signer = forger if i % 50 == 1 else issuer
        lines.append(
            signer.issue(
                u,
                aud,
                "credit_risk_modelling",
                ("registration",) if i % 50 == 2 else cats,
                at - 86_400 * 30,
                at + 86_400 * 30,
                token_id=f"t{i}",
            )  # fmt: skip
        )
    (tmp_path / "tokens.txt").write_text("\n".join(lines[:-10]) + "\n")  # the last 10 firms: no token
    (tmp_path / "eid.pub.jwk").write_text(json.dumps(issuer.public.to_jwk()))
    (tmp_path / "rl.jwt").write_text(issuer.revocation_list(2, [f"t{i}" for i in range(0, N_ROWS, 50)], at))
    text = f"""
[run]
name = "enforce"
mode = "vertical-lr"
[parties.bank]
role = "bank"
data = "{tmp_path / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{tmp_path / "centre.csv"}"
[consent]
tokens = "{tmp_path / "tokens.txt"}"
issuer_keys = ["{tmp_path / "eid.pub.jwk"}"]
revocations = ["{tmp_path / "rl.jwt"}"]
store = "{tmp_path / "store.npz"}"
at = "{DAY.isoformat()}"
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
"""
    status = run_scenario_in_process(config.loads(text), tmp_path / "run")
    assert status["status"] == "completed", status
    consent = next(r.payload for r in read_records(tmp_path / "run/ledger.sqlite") if r.kind == "consent_check")
    n_each = N_ROWS // 50
    assert consent["mode"] == "enforce"
    assert consent["refused"] == {"revoked": n_each, "forged": n_each, "out_of_scope": n_each}
    assert consent["checked"] == N_ROWS - 10  # firms without a token never entered PSI
    assert consent["revocation_lists"] == {"eid-platform": 2}
    assert consent["issuers"] == {"eid-platform": issuer.public.fingerprint}
    assert json.loads((tmp_path / "run/metrics.json").read_text())["rows_intersection"] == consent["accepted"]
    assert (tmp_path / "store.npz").exists()  # kept for the next run: each token verified once
