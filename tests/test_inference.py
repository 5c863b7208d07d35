"""Joint inference: consent keeps refused applicants away from the centre, scores are exact, the
ledger counts refusals and names the model parts, and what crosses the relay is sealed.

Integration tests train once on a 1500-row default_credit subset (1024-bit test keys) and score 50
applicants through the real apps on :class:`parties.common.grid.InProcessGrid` (:func:`parties.in_process.run_scenario_in_process`); protocol tests drive
the party objects directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.data import uscc
from fedcredit.data.applicants import load_applicants
from fedcredit.data.schema import LABEL_COLUMN, DataError
from fedcredit.features import LocalPreprocessor
from fedcredit.ledger import load_public_key, read_records, verify
from parties.common import transport
from parties.in_process import run_scenario_in_process
from protocols.common import wire
from protocols.common.party import Envelope, ProtocolError, run_local
from protocols.gbdt.plain import Tree
from protocols.inference import (
    BankModelPart,
    CentreModelPart,
    InferenceBank,
    InferenceCentre,
    InferenceError,
    InferencePartials,
    InferenceRequest,
    sigmoid,
)
from protocols.secureboost.model import SecureBoostGuestModel, SecureBoostHostModel, predict_local

N_ROWS = 1500
DAY = "2025-06-01"
REFUSED = {"revoked": 4, "expired": 3, "wrong_purpose": 2, "no_consent": 1}
N_KNOWN, N_UNKNOWN = 42, 8


# -- fixtures: one training run, one inference run -------------------------------------------


def _parties(d: Path) -> str:
    """The scenario's two parties, on the subset written to ``d``."""
    return f"""[parties.bank]
role = "bank"
data = "{d / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{d / "centre.csv"}"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("inf-data")
    b, c = write_vertical_subset(d, N_ROWS)
    train_dir = d / "train"
    text = f"""
[run]
name = "train"
mode = "vertical-lr"
{_parties(d)}[consent]
mode = "demo"
[lr]
epochs = 1
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""
    status = run_scenario_in_process(config.loads(text), train_dir)
    assert status["status"] == "completed", status
    return {"dir": d, "bank": b, "centre": c, "train": train_dir}


@pytest.fixture(scope="module")
def applicants(trained) -> dict:
    """50 applicants: 42 the centre holds (10 of them refused by consent), 8 it does not hold."""
    d, b = trained["dir"], trained["bank"]
    known = b.iloc[100 : 100 + N_KNOWN].drop(columns=[LABEL_COLUMN])
    held = set(trained["centre"]["uscc"])
    new_ids = [u for u in uscc.generate(40, np.random.default_rng(7)) if u not in held][:N_UNKNOWN]
    unknown = b.iloc[300 : 300 + N_UNKNOWN].drop(columns=[LABEL_COLUMN]).assign(uscc=new_ids)
    apps = pd.concat([known, unknown]).sample(frac=1.0, random_state=3).reset_index(drop=True)
    apps = apps[["uscc", *reversed(apps.columns[1:])]]  # column order must not matter
    apps.to_csv(d / "applicants.csv", index=False)
    ids = list(known["uscc"])
    groups, k = {}, 0
    for reason, n in REFUSED.items():
        groups[reason] = ids[k : k + n]
        k += n
    rows = ["uscc,bank,purpose,scope,valid_from,valid_until,revoked_at"]
    for u in ids[k:] + new_ids:
        rows.append(f"{u},bank,loan_decision,*,2024-01-01,2026-12-31,")
    rows += [f"{u},bank,loan_decision,*,2024-01-01,2026-12-31,2025-03-01" for u in groups["revoked"]]
    rows += [f"{u},bank,loan_decision,*,2023-01-01,2025-01-31," for u in groups["expired"]]
    rows += [f"{u},bank,credit_risk_modelling,*,2024-01-01,2026-12-31," for u in groups["wrong_purpose"]]
    (d / "consents.csv").write_text("\n".join(rows) + "\n")
    return {"frame": apps, "refused": groups, "allowed_known": ids[k:], "unknown": new_ids, "all": list(apps["uscc"])}


def inference_text(
    trained: dict, *, model_dir: Path | None = None, purpose: str = "loan_decision", batch_size: int = 20
) -> str:
    d = trained["dir"]
    return f"""
[run]
name = "inf"
mode = "inference"
purpose = "{purpose}"
{_parties(d)}[inference]
model_dir = "{model_dir or trained["train"]}"
applicants = "{d / "applicants.csv"}"
batch_size = {batch_size}
[consent]
mode = "demo"
registry = "{d / "consents.csv"}"
at = "{DAY}"
"""


def _capture():
    captured: list = []
    return captured, (lambda nid, req, rep: captured.append((nid, req, rep)))


@pytest.fixture(scope="module")
def inferred(trained, applicants, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("inf-run")
    captured, tap = _capture()
    status = run_scenario_in_process(config.loads(inference_text(trained)), out, tap=tap)
    assert status["status"] == "completed", status
    return {
        "out": out,
        "captured": captured,
        "scores": pd.read_csv(out / "nodes/bank/scores.csv", dtype={"uscc": str, "status": str}),
    }


def _records(out: Path, kind: str) -> list[dict]:
    return [r.payload for r in read_records(out / "ledger.sqlite") if r.kind == kind]


# -- integration ---------------------------------------------------------------------------


def test_scores_equal_local_recomputation_with_both_model_parts(trained, applicants, inferred):
    parts = {p: json.loads((trained["train"] / f"nodes/{p}/model.json").read_text()) for p in ("bank", "credit_centre")}
    s = inferred["scores"].set_index("uscc")
    assert list(inferred["scores"]["uscc"]) == applicants["all"]  # every applicant, in input order
    scored = applicants["allowed_known"]
    apps = applicants["frame"].set_index("uscc").loc[scored]
    centre = trained["centre"].set_index("uscc").loc[scored]
    xb = LocalPreprocessor.from_dict(parts["bank"]["preprocessor"]).transform(
        apps[parts["bank"]["feature_names"]].to_numpy(float)
    )
    xc = LocalPreprocessor.from_dict(parts["credit_centre"]["preprocessor"]).transform(
        centre[parts["credit_centre"]["feature_names"]].to_numpy(float)
    )
    wb = np.array(parts["bank"]["model"]["weights"])
    wc = np.array(parts["credit_centre"]["model"]["weights"])
    expected = sigmoid(xb @ wb[:-1] + wb[-1] + xc @ wc)
    np.testing.assert_allclose(s.loc[scored, "score"].to_numpy(), expected, rtol=1e-9)
    assert (s.loc[scored, "status"] == "scored").all()
    assert (s.loc[applicants["unknown"], "status"] == "unknown_at_centre").all()
    for reason, ids in applicants["refused"].items():
        assert (s.loc[ids, "status"] == f"refused_consent:{reason}").all()
    assert s.loc[applicants["unknown"] + sum(applicants["refused"].values(), []), "score"].isna().all()


def test_refused_applicants_never_reach_the_centre_and_the_ledger_counts_them(trained, applicants, inferred):
    out, refused_ids = inferred["out"], sum(applicants["refused"].values(), [])
    # what the centre received (its own query log) is exactly the consented applicants
    log = pd.read_csv(out / "nodes/credit_centre/query_log.csv", dtype={"uscc": str})
    assert sorted(log["uscc"]) == sorted(applicants["allowed_known"] + applicants["unknown"])
    assert not set(refused_ids) & set(log["uscc"])
    assert log["found"].sum() == len(applicants["allowed_known"])
    # nothing in clear crosses the relay: no applicant USCC in any payload, summary or request
    kinds = set()
    for _nid, req, rep in inferred["captured"]:
        outbox, _, _, summary = transport.read_reply(rep.content)
        _, _, params, inbox = transport.read_request(req.content)
        blobs = [summary, json.dumps(params).encode()] + [e.payload for e in outbox + inbox]
        kinds.update(e.kind for e in outbox)
        for u in applicants["all"]:
            assert not any(u.encode() in blob for blob in blobs), f"applicant {u} left a node in clear"
    assert kinds == {"InferenceKey", "InferenceRequest", "InferencePartials"}
    # ledger: one inference record per batch (20, 20, 10), refusals by reason, model hashes, no ids
    recs = _records(out, "inference")
    assert [r["batch"] for r in recs] == [0, 1, 2] and [r["requested"] for r in recs] == [20, 20, 10]
    total = {k: sum(r[k] for r in recs) for k in ("requested", "sent", "found", "unknown_at_centre", "scored")}
    assert total == {"requested": 50, "sent": 40, "found": 32, "unknown_at_centre": 8, "scored": 32}
    by_reason: dict[str, int] = {}
    for r in recs:
        for k, v in r["refused"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    assert by_reason == REFUSED
    shas = {
        p: hashlib.sha256((trained["train"] / f"nodes/{p}/model.json").read_bytes()).hexdigest()
        for p in ("bank", "credit_centre")
    }
    train_run = read_records(trained["train"] / "ledger.sqlite")[0].run_id
    assert all(
        r["models"] == shas and r["training_run_id"] == train_run and r["purpose"] == "loan_decision" for r in recs
    )
    blob = (out / "ledger.sqlite").read_bytes()
    assert not any(u.encode() in blob for u in applicants["all"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["applicants"] == 50 and m["refused"] == REFUSED and m["scored"] == 32 and m["batches"] == 3
    assert m["seconds"] > 0


def test_inference_ledger_verifies_with_egress_logs(inferred):
    out = inferred["out"]
    report = verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )
    assert report.ok and report.complete, report.errors
    assert len(report.egress) == 2


def test_missing_model_part_fails_naming_the_party(trained, applicants, tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "nodes/bank").mkdir(parents=True)
    shutil.copy(trained["train"] / "nodes/bank/model.json", model_dir / "nodes/bank/model.json")
    status = run_scenario_in_process(config.loads(inference_text(trained, model_dir=model_dir)), tmp_path / "out")
    assert status["status"] == "failed" and status["party"] == "credit_centre"
    assert "no trained model part" in status["error"] and "credit_centre" in status["error"]
    failure = _records(tmp_path / "out", "failure")
    assert failure and failure[0]["party"] == "credit_centre"


def test_model_part_not_released_by_the_training_run_is_refused_before_any_query(trained, applicants, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained["train"], model_dir, ignore=shutil.ignore_patterns("egress.sqlite*"))
    path = model_dir / "nodes/credit_centre/model.json"
    part = json.loads(path.read_text())
    part["model"]["weights"][0] += 0.5  # a part from another run (or tampered with)
    path.write_text(json.dumps(part))
    captured, tap = _capture()
    status = run_scenario_in_process(
        config.loads(inference_text(trained, model_dir=model_dir)), tmp_path / "out", tap=tap
    )
    assert status["status"] == "failed" and status["party"] == "credit_centre"
    assert "is not the one training run" in status["error"]
    sent = {e.kind for _n, _q, rep in captured for e in transport.read_reply(rep.content)[0]}
    assert "InferenceRequest" not in sent


def test_centre_refuses_a_purpose_other_than_loan_decision(trained, applicants, tmp_path):
    status = run_scenario_in_process(config.loads(inference_text(trained, purpose="credit_risk_modelling")), tmp_path)
    assert status["status"] == "failed" and status["party"] == "credit_centre"
    assert "loan_decision" in status["error"]


@pytest.mark.slow
def test_secureboost_model_scores_applicants_exactly(trained, applicants, tmp_path):
    """Train small SecureBoost (slow: ~20 s), then score through the apps; equals predict_local."""
    text = inference_text(trained).replace('mode = "inference"', 'mode = "secureboost"').split("[inference]")[0]
    # trained under demo consent like the `trained` fixture (training is fail-closed without a
    # [consent] section; the applicants' registry grants loan decisions, not model training)
    text += '[consent]\nmode = "demo"\n'
    text += "[secureboost]\nn_trees = 2\nmax_depth = 2\nmax_bins = 8\nkey_bits = 1024\ninsecure_test_key = true\n"
    text = text.replace('purpose = "loan_decision"', 'purpose = "credit_risk_modelling"')
    assert run_scenario_in_process(config.loads(text), tmp_path / "train")["status"] == "completed"
    status = run_scenario_in_process(
        config.loads(inference_text(trained, model_dir=tmp_path / "train")), tmp_path / "inf"
    )
    assert status["status"] == "completed", status
    parts = {p: json.loads((tmp_path / f"train/nodes/{p}/model.json").read_text()) for p in ("bank", "credit_centre")}
    guest = SecureBoostGuestModel.from_bytes(bytes.fromhex(parts["bank"]["model"]["model_hex"]))
    host = SecureBoostHostModel.from_bytes(bytes.fromhex(parts["credit_centre"]["model"]["model_hex"]))
    scored = applicants["allowed_known"]
    xb = LocalPreprocessor.from_dict(parts["bank"]["preprocessor"]).transform(
        applicants["frame"].set_index("uscc").loc[scored, parts["bank"]["feature_names"]].to_numpy(float)
    )
    xc = LocalPreprocessor.from_dict(parts["credit_centre"]["preprocessor"]).transform(
        trained["centre"].set_index("uscc").loc[scored, parts["credit_centre"]["feature_names"]].to_numpy(float)
    )
    s = pd.read_csv(tmp_path / "inf/nodes/bank/scores.csv", dtype={"uscc": str}).set_index("uscc")
    np.testing.assert_allclose(s.loc[scored, "score"].to_numpy(), predict_local(guest, host, xb, xc), rtol=1e-9)
    assert json.loads((tmp_path / "inf/metrics.json").read_text())["model_type"] == "secureboost"


# -- protocol level ---------------------------------------------------------------------------


def _lr_parties(n_bank=30, n_known=25, refuse=(3, 7), batch=0, session="s1"):
    rng = np.random.default_rng(0)
    ids = uscc.generate(n_bank + 10, rng)
    centre_ids = ids[:n_known] + ids[n_bank:]
    Xc = rng.normal(size=(len(centre_ids), 4))
    Xb = rng.normal(size=(n_bank, 3))
    wb, wc = rng.normal(size=4), rng.normal(size=4)
    refusals = [("revoked" if i in refuse else None) for i in range(n_bank)]
    bank = InferenceBank(
        "b",
        "c",
        session=session,
        batch=batch,
        purpose="loan_decision",
        model=BankModelPart.from_dict({"type": "hetero_lr", "weights": wb.tolist()}),
        ids=ids[:n_bank],
        X=Xb,
        refusals=refusals,
    )
    centre = InferenceCentre(
        "c",
        "b",
        session=session,
        batch=batch,
        model=CentreModelPart.from_dict({"type": "hetero_lr", "weights": wc.tolist()}),
        ids=centre_ids,
        features=Xc,
        transform=lambda X: 2 * X,
    )
    return bank, centre, (ids, centre_ids, Xb, Xc, wb, wc, refusals)


def test_lr_protocol_exact_restartable_and_only_consented_usccs_reach_the_centre():
    bank, centre, (ids, centre_ids, Xb, Xc, wb, wc, refusals) = _lr_parties()
    inputs = {
        "b": dict(model=bank.model, ids=bank.ids, X=bank.X, refusals=refusals),
        "c": dict(model=centre.model, ids=centre_ids, features=Xc, transform=lambda X: 2 * X),
    }

    def restart(name, party):
        cls = InferenceBank if name == "b" else InferenceCentre
        return cls.from_state(party.to_state(), **inputs[name])

    parties = {"b": bank, "c": centre}
    transcript = run_local(parties, restart=restart)
    assert len(transcript.steps) == 3  # key, request, answer
    got_ids, scores, status = parties["b"].results()
    pos = {u: i for i, u in enumerate(centre_ids)}
    for i, u in enumerate(got_ids):
        if refusals[i]:
            assert status[i] == "refused_consent:revoked" and np.isnan(scores[i])
        elif u in pos:
            expected = sigmoid(Xb[i] @ wb[:-1] + wb[-1] + 2 * Xc[pos[u]] @ wc)
            assert status[i] == "scored" and scores[i] == pytest.approx(expected, rel=1e-12)
        else:
            assert status[i] == "unknown_at_centre" and np.isnan(scores[i])
    queried, found = parties["c"].query_log()
    assert queried == [u for u, r in zip(ids, refusals) if not r] and found.sum() == 23
    assert parties["b"].counts() == {
        "requested": 30,
        "refused": {"revoked": 2},
        "sent": 28,
        "found": 23,
        "unknown_at_centre": 5,
        "scored": 23,
    }
    for env in transcript.steps[1] + transcript.steps[2]:
        assert not any(u.encode() in env.payload for u in ids)  # sealed from the relay


def _sb_models():
    def tree(**kw):
        n = len(kw["left"])
        base = dict(
            feature=np.full(n, -1),
            threshold=np.full(n, np.nan),
            split_id=np.zeros(n, np.uint64),
            gain=np.zeros(n),
            n_samples=np.zeros(n, np.int64),
        )
        return Tree.from_dict({**base, **kw})

    t1 = tree(
        left=[1, 3, -1, -1, -1],
        right=[2, 4, -1, -1, -1],
        owner=[1, 2, 0, 0, 0],
        feature=[0, -1, -1, -1, -1],
        threshold=[0.0, np.nan, np.nan, np.nan, np.nan],
        split_id=np.array([0, 77, 0, 0, 0], np.uint64),
        value=[0, 0, 0.3, -0.5, 0.8],
    )
    t2 = tree(
        left=[1, -1, -1],
        right=[2, -1, -1],
        owner=[2, 0, 0],
        split_id=np.array([91, 0, 0], np.uint64),
        value=[0, -0.2, 0.4],
    )
    guest = SecureBoostGuestModel(-1.0, 2, [t1, t2])
    host = SecureBoostHostModel(
        3, np.array([77, 91], np.uint64), np.array([1, 2]), np.array([0.5, -1.0]), np.array([0, 1])
    )
    return guest, host


def _sb_bank(guest: SecureBoostGuestModel, ids: list[str], X: np.ndarray) -> InferenceBank:
    """Bank "b" scoring ``ids`` (all consented) with a SecureBoost guest model, batch 0 of run "s"."""
    part = BankModelPart.from_dict({"type": "secureboost", "model_hex": guest.to_bytes().hex()})
    kw = dict(session="s", batch=0, purpose="loan_decision")
    return InferenceBank("b", "c", **kw, model=part, ids=ids, X=X, refusals=[None] * len(ids))


def _centre(model: dict, ids: list[str], features: np.ndarray) -> InferenceCentre:
    """Centre "c" answering batch 0 of run "s" from ``ids``/``features`` with ``model``."""
    return InferenceCentre(
        "c", "b", session="s", batch=0, model=CentreModelPart.from_dict(model), ids=ids, features=features
    )


def test_secureboost_protocol_matches_predict_local():
    guest, host = _sb_models()
    rng = np.random.default_rng(1)
    ids = uscc.generate(40, rng)
    centre_ids, Xc = ids[5:], rng.normal(size=(35, 3))
    Xb = rng.normal(size=(40, 2))
    bank = _sb_bank(guest, ids, Xb)
    centre = _centre({"type": "secureboost", "model_hex": host.to_bytes().hex()}, centre_ids, Xc)
    run_local({"b": bank, "c": centre})
    _, scores, status = bank.results()
    assert status[:5] == ["unknown_at_centre"] * 5 and np.isnan(scores[:5]).all()
    np.testing.assert_allclose(scores[5:], predict_local(guest, host, Xb[5:], Xc), rtol=1e-12)


def test_model_types_must_match_and_secureboost_bank_needs_secureboost_centre():
    guest, _ = _sb_models()
    bank = _sb_bank(guest, uscc.generate(3, np.random.default_rng(2)), np.zeros((3, 2)))
    centre = _centre({"type": "hetero_lr", "weights": [1.0, 2.0, 3.0]}, [], np.zeros((0, 3)))
    with pytest.raises(InferenceError, match="different training runs"):
        run_local({"b": bank, "c": centre})
    with pytest.raises(InferenceError, match="cannot score"):
        BankModelPart.from_dict({"type": "forest"})


def test_tampered_replayed_or_wrong_batch_messages_are_refused():
    bank, centre, _ = _lr_parties()
    key = centre.start()
    bank.start()
    (req,) = bank.receive(key)
    flipped = wire.decode(req.payload, InferenceRequest)
    flipped.sealed = bytes([flipped.sealed[0] ^ 1]) + flipped.sealed[1:]
    with pytest.raises(InferenceError, match="does not open"):
        centre.receive([Envelope("b", "c", wire.encode(flipped))])
    other_centre = _lr_parties(batch=1)[1]
    other_centre.start()
    with pytest.raises(InferenceError, match="wrong run or batch"):
        other_centre.receive([req])
    # a replay into another run's session, received by a centre holding the *same* key (so only the
    # seal's binding to the session can refuse it; tests/test_binding.py does this for every field)
    replay = dataclasses.replace(wire.decode(req.payload, InferenceRequest), session="s2")
    same_key = InferenceCentre.from_state(
        centre.to_state(), model=centre.model, ids=centre.ids, features=centre.features, transform=centre.transform
    )
    same_key.s.session = "s2"
    with pytest.raises(InferenceError, match="does not open"):
        same_key.receive([Envelope("b", "c", wire.encode(replay))])
    same_key = InferenceCentre.from_state(
        centre.to_state(), model=centre.model, ids=centre.ids, features=centre.features, transform=centre.transform
    )
    (answer,) = same_key.receive([req])  # positive control: the untouched request opens with that key
    assert answer.kind == "InferencePartials"
    stranger_bank = _lr_parties()[0]
    stranger_bank.start()
    with pytest.raises(InferenceError, match="expected exactly one InferenceKey"):
        stranger_bank.receive([Envelope("x", "b", key[0].payload)])


def test_restore_with_other_data_is_refused_and_a_tampered_answer_does_not_open():
    bank, centre, (_ids, _cids, _Xb, _Xc, _wb, _wc, refusals) = _lr_parties()
    key = centre.start()
    bank.start()
    (req,) = bank.receive(key)
    state = bank.to_state()
    with pytest.raises(ProtocolError, match="digest mismatch"):
        InferenceBank.from_state(state, model=bank.model, ids=bank.ids, X=bank.X + 1.0, refusals=refusals)
    with pytest.raises(ProtocolError, match="digest mismatch"):
        InferenceBank.from_state(state, model=bank.model, ids=bank.ids, X=bank.X, refusals=[None] * len(refusals))
    with pytest.raises(ProtocolError, match="not a bank party"):
        InferenceBank.from_state(centre.to_state(), model=bank.model, ids=bank.ids, X=bank.X, refusals=refusals)
    (answer,) = centre.receive([req])
    reply = wire.decode(answer.payload, InferencePartials)
    reply.sealed = reply.sealed[:-1] + bytes([reply.sealed[-1] ^ 1])
    restored = InferenceBank.from_state(state, model=bank.model, ids=bank.ids, X=bank.X, refusals=refusals)
    with pytest.raises(InferenceError, match="InferencePartials does not open"):
        restored.receive([Envelope("c", "b", wire.encode(reply))])
    restored.receive([answer])  # the untouched answer opens after the restart
    assert restored.finished and restored.counts()["scored"] == 23


# -- inputs ------------------------------------------------------------------------------------


def test_applicant_table_label_optional_and_bad_input_named(tmp_path):
    ids = uscc.generate(3, np.random.default_rng(4))
    p = tmp_path / "a.csv"
    pd.DataFrame({"uscc": ids, "x2": [1, 2, 3], "x1": [4.0, 5, 6]}).to_csv(p, index=False)
    d = load_applicants(p, ["x1", "x2"])
    assert d.labels is None and d.feature_names == ["x1", "x2"] and d.features[0].tolist() == [4.0, 1.0]
    pd.DataFrame({"uscc": ids, LABEL_COLUMN: [0, 1, 0], "x1": [1, 2, 3]}).to_csv(p, index=False)
    assert load_applicants(p, ["x1"]).labels is None  # a label column is allowed and ignored
    with pytest.raises(DataError, match="'x2'"):
        load_applicants(p, ["x1", "x2"])
    pd.DataFrame({"uscc": [ids[0], uscc.corrupt_check_character(ids[1])], "x1": [1, 2]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="row 2"):
        load_applicants(p)


def test_bundled_inference_scenario_parses():
    sc = config.load(Path(__file__).parent.parent / "configs/inference.toml")
    assert sc.mode == "inference" and sc.purpose == "loan_decision"
    assert sc.section("inference")["model_dir"] == "runs/demo"
    assert len(load_applicants(sc.resolve(sc.section("inference")["applicants"]))) == 200
