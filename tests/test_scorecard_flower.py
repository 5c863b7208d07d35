"""`mode = "scorecard"` as a vertical Flower run (issue 17): PSI, consent, split, federated binning,
hetero-LR on WOE, points, joint scoring, release; every message relayed, signed and in the ledger.

The run goes through :func:`parties.in_process.run_scenario_in_process` (the real coordinator and
ClientApp on an in-process grid) so every reply a node sends is captured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_vertical_subset
from leak_support import Needle, NeedleIndex, feature_needles
from ledger_support import verified

from fedcredit import config
from fedcredit import metrics as M
from fedcredit.ledger import read_records
from parties.common import transport
from parties.in_process import run_scenario_in_process

N_ROWS = 2000
WINDOW = 16  # consecutive aligned rows of one column


def scenario_text(directory: Path, *, consent: str = 'mode = "demo"') -> str:
    return f"""
[run]
name = "scorecard-flower"
mode = "scorecard"
seed = 42
[parties.bank]
role = "bank"
data = "{directory}/bank.csv"
[parties.credit_centre]
role = "credit_centre"
data = "{directory}/centre.csv"
[consent]
{consent}
[binning]
key_bits = 1024
insecure_test_key = true
[scorecard]
bands = 5
[lr]
epochs = 2
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scdata")
    write_vertical_subset(d, N_ROWS)
    return d


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sc-run")
    sc = config.loads(scenario_text(data_dir))
    captured: list = []
    grids: list = []
    status = run_scenario_in_process(
        sc, out, tap=lambda nid, req, rep: captured.append((nid, req, rep)), prepare_grid=grids.append
    )
    return {"status": status, "out": out, "scenario": sc, "captured": captured, "grid": grids[0]}


def _nodes(run: dict) -> dict:
    from parties.common.node import NodeRuntime

    nodes = [NodeRuntime(ctx, run["scenario"], run["out"]) for ctx in run["grid"].contexts.values()]
    return {n.name: n for n in nodes}


def test_scorecard_run_verifies_and_writes_each_partys_exports_on_its_node(run):
    out, status = run["out"], run["status"]
    assert status["status"] == "completed", status
    report = verified(out)
    assert report.ok and report.complete, report.errors
    kinds = [r.kind for r in read_records(out / "ledger.sqlite")]
    for kind in ("consent_check", "psi", "binning", "points_tables", "model_release", "run_end"):
        assert kind in kinds, kinds
    phases = {r.payload.get("step", "").split("/")[0] for r in read_records(out / "ledger.sqlite") if r.kind == "step"}
    assert {"align", "consent", "split", "binning", "scorecard_lr", "points", "scorecard_score"} <= phases, phases
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "scorecard" and m["auc"] > 0.7 and m["rows_validation"] == 0
    assert m["binning"]["bank"]["centre_kept"] == m["binning"]["credit_centre"]["kept"] > 0
    bank, centre = out / "nodes" / "bank", out / "nodes" / "credit_centre"
    bpts, cpts = pd.read_csv(bank / "points.csv"), pd.read_csv(centre / "points.csv")
    assert "(base)" in set(bpts["column"]) and not set(bpts["column"]) & set(cpts["column"])
    assert not (bank / "credit_centre").exists() and not (centre / "iv_report.csv").exists()
    ivr = pd.read_csv(bank / "iv_report.csv")
    assert set(ivr["party"]) == {"bank", "credit_centre"}
    assert set(ivr[(ivr["party"] == "credit_centre") & ivr["kept"]]["column"]) == set(cpts["column"])
    bands = json.loads((bank / "bands.json").read_text())
    assert len(bands) == 5 and sum(r["count"] for r in bands) == m["rows_test"]
    assert (bank / "score_probability.csv").exists()
    # each points table's hash is in the ledger, so a table changed after the run shows
    pts = next(r.payload for r in read_records(out / "ledger.sqlite") if r.kind == "points_tables")
    import hashlib

    assert pts["credit_centre"]["sha256"] == hashlib.sha256((centre / "points.json").read_bytes()).hexdigest()


def test_flower_run_equals_the_in_process_scorecard(run):
    """The wiring changes nothing in the maths: same rows, same bins, same LR, same scores."""
    from fedcredit.scorecard_run import in_process_scorecard

    out = run["out"]
    with np.load(out / "nodes" / "bank" / "test_scores.npz") as z:
        used, points, y = set(z["aligned_ids"].tolist()), z["points"], z["y"]
    sc, (_btr, _ctr, bte, cte) = in_process_scorecard(run["scenario"], used)
    ref = sc.score(bte.features, cte.features)
    assert np.array_equal(bte.require_labels(), y)  # the same test rows in the same order
    assert np.max(np.abs(ref - points)) < 1e-9
    m = json.loads((out / "metrics.json").read_text())
    assert abs(M.summary(y, sc.scale.probability(ref))["auc"] - m["auc"]) < 1e-6  # metrics.json rounds to 1e-6
    # each party's points table is the in-process one
    cpts = pd.read_csv(out / "nodes" / "credit_centre" / "points.csv")
    assert np.allclose(cpts["points"].to_numpy(), [r["points"] for r in sc.centre_points.rows], atol=1e-9)
    base = pd.read_csv(out / "nodes" / "bank" / "points.csv").set_index("column").loc["(base)", "points"]
    assert base == pytest.approx(sc.base_points, abs=1e-9)


def test_simulation_harness_adds_pooled_references_on_the_runs_rows_and_bins(run):
    from fedcredit.scorecard_run import add_scorecard_reference

    m = add_scorecard_reference(run["scenario"], run["out"])
    assert m["centralised_rows"] == N_ROWS
    assert abs(m["auc"] - m["centralised"]["same_bins_sklearn_lr"]["auc"]) < 0.03
    assert m["centralised"]["optbinning_scorecard"]["auc"] > 0.7
    assert m["centre_columns_kept"] and m["bank_columns_kept"]


def test_consentless_scorecard_is_refused_before_any_data_is_used(data_dir, tmp_path):
    sc = config.loads(scenario_text(data_dir, consent='mode = "enforce"'))
    status = run_scenario_in_process(sc, tmp_path)
    assert status["status"] == "failed" and status["party"] == "coordinator" and status["step"] == "setup"
    assert "consent" in status["error"]
    report = verified(tmp_path)
    assert report.ok, report.errors
    assert not any(r.kind == "binning" for r in read_records(tmp_path / "ledger.sqlite"))


# -- the centre never sends its per-row WOE values or bins ------------------------------------


def _centre_needles(run: dict) -> list[Needle]:
    """From the centre node's own stored state: its aligned rows and split, its WOE encoder."""
    from parties.vertical.phase import COMMON_ROWS, TEST_MASK, VAL_MASK, get_array
    from parties.vertical.scorecard_phases import encoder

    node = _nodes(run)["credit_centre"]
    data, rows = node.data(), get_array(node, COMMON_ROWS)
    test, val = get_array(node, TEST_MASK), get_array(node, VAL_MASK)
    enc = encoder(node)
    out: list[Needle] = []
    for part, sel in (("train", rows[~test & ~val]), ("test", rows[test])):
        X = enc.select(data.features[sel], data.feature_names)
        W = enc.transform(X)
        codes = np.column_stack([c.bins.codes(X[:, j]) for j, c in enumerate(enc.columns)])
        for j, name in enumerate(enc.names):
            for a in range(0, min(len(sel), 40 * WINDOW) - WINDOW + 1, WINDOW):
                k, w = codes[a : a + WINDOW, j], W[a : a + WINDOW, j]
                if len(set(k.tolist())) < 3:
                    continue
                what = f"{name} ({part} rows {a}..)"
                out += [
                    Needle("credit_centre", f"WOE float64 {what}", w.tobytes()),
                    Needle("credit_centre", f"WOE float32 {what}", w.astype(np.float32).tobytes()),
                    Needle(
                        "credit_centre", f"WOE fixed-point int64 {what}", np.rint(w * 4096).astype(np.int64).tobytes()
                    ),
                    Needle("credit_centre", f"WOE JSON {what}", json.dumps(w.tolist())[1:-1].encode()),
                    Needle("credit_centre", f"bins JSON {what}", ", ".join(map(str, k.tolist())).encode()),
                    Needle("credit_centre", f"bins JSON compact {what}", ",".join(map(str, k.tolist())).encode()),
                ]
                out += [
                    Needle("credit_centre", f"bins {t} {what}", k.astype(t).tobytes())
                    for t in ("int8", "int16", "int32", "int64")
                ]
        out += feature_needles("credit_centre", W, f"WOE rows ({part})")
        out += feature_needles("credit_centre", X, f"raw kept columns ({part})")
    return out


def _centre_leaks(captured: list, index: NeedleIndex, centre_node_id: int) -> list[str]:
    found = []
    for nid, req, rep in captured:
        if nid != centre_node_id:
            continue
        outbox, _, _summary, summary_bytes = transport.read_reply(rep.content)
        for n in index.find(summary_bytes):
            found.append(f"{n.what} in the centre's summary at {req.metadata.group_id}")
        for env in outbox:
            for n in index.find(env.payload):
                found.append(f"{n.what} in {env.kind} to {env.recipient}")
    return found


def _centre_id(run: dict) -> int:
    from parties.common.node import NodeRuntime

    for nid, ctx in run["grid"].contexts.items():
        if NodeRuntime(ctx, run["scenario"], run["out"]).name == "credit_centre":
            return nid
    raise AssertionError("no credit centre node on the grid")


def test_centre_never_sends_its_per_row_woe_or_bins_planted_leaks_are_caught(run):
    needles = _centre_needles(run)
    assert len(needles) > 100
    index = NeedleIndex(needles)
    centre_id = _centre_id(run)
    centre_msgs = [
        (env.kind, env.payload)
        for nid, _req, rep in run["captured"]
        if nid == centre_id
        for env in transport.read_reply(rep.content)[0]
    ]
    kinds = {k for k, _ in centre_msgs}
    assert {"EncryptedBinSums", "CentreKept"} <= kinds, kinds  # the binning messages were captured
    # positive control first: the same needles planted into copies of the centre's real messages
    rng = np.random.default_rng(1)
    planted = {n.what: n.pattern for n in needles[:: max(1, len(needles) // 40)]}
    missed = []
    for what, leak in planted.items():
        kind, payload = centre_msgs[int(rng.integers(len(centre_msgs)))]
        cut = int(rng.integers(len(payload)))
        if not index.find(payload[:cut] + leak + payload[cut:]):
            missed.append(f"{what} planted in {kind}")
    assert not missed, missed[:5]
    # then the honest run: nothing of the sort left the centre's node
    leaks = _centre_leaks(run["captured"], index, centre_id)
    assert not leaks, leaks[:10]


# -- joint inference of scores -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(run) -> dict:
    """The one-process chain on the Flower run's rows (its reference)."""
    from fedcredit.scorecard_run import in_process_scorecard

    with np.load(run["out"] / "nodes" / "bank" / "test_scores.npz") as z:
        used = set(z["aligned_ids"].tolist())
    sc, parts = in_process_scorecard(run["scenario"], used)
    return {"card": sc, "parts": parts}


def test_joint_inference_scores_applicants_with_both_partys_points(run, reference, data_dir, tmp_path):
    """Each party applies its own released WOE encoder; the centre's partial (minus its points
    over the scale factor) travels sealed; the bank's points = base + own points + centre points."""
    text = f"""
[run]
name = "sc-inference"
purpose = "loan_decision"
mode = "inference"
seed = 42
[parties.bank]
role = "bank"
data = "{data_dir}/bank.csv"
[parties.credit_centre]
role = "credit_centre"
data = "{data_dir}/centre.csv"
[inference]
model_dir = "{run["out"]}"
batch_size = 700
[consent]
mode = "demo"
"""
    status = run_scenario_in_process(config.loads(text), tmp_path)
    assert status["status"] == "completed", status
    assert verified(tmp_path).ok
    scores = pd.read_csv(tmp_path / "nodes" / "bank" / "scores.csv", dtype={"uscc": str})
    assert list(scores.columns) == ["uscc", "score", "status", "points"]
    done = scores[scores["status"] == "scored"]
    assert len(done) == N_ROWS
    bank = pd.read_csv(data_dir / "bank.csv", dtype={"uscc": str}).set_index("uscc").loc[done["uscc"]]
    centre = pd.read_csv(data_dir / "centre.csv", dtype={"uscc": str}).set_index("uscc").loc[done["uscc"]]
    sc = reference["card"]
    btr = reference["parts"][0]
    want = sc.score(
        bank[btr.feature_names].to_numpy(float), centre[reference["parts"][1].feature_names].to_numpy(float)
    )
    assert np.max(np.abs(done["points"].to_numpy() - want)) < 1e-6  # scores.csv keeps 10 significant digits
    assert np.allclose(done["score"].to_numpy(), sc.scale.probability(want), rtol=1e-8)


def test_sparse_public_records_run_without_imputation(tmp_path):
    """~30 % missing centre cells and text categories: the Flower run bins them (missing and
    levels get their own bins) and still equals the one-process chain."""
    from fedcredit.data.synth import generate
    from fedcredit.data.synth_sparse import CATEGORICAL, sparsify_dir
    from fedcredit.scorecard_run import in_process_scorecard

    data = tmp_path / "data"
    generate(4000, 1, data, seed=3)
    sparsify_dir(data, seed=3)
    cats = ", ".join(f'"{c}"' for c in CATEGORICAL)
    text = f"""
[run]
name = "sc-sparse"
mode = "scorecard"
seed = 7
[parties.bank_a]
role = "bank"
data = "synthetic:{data}"
[parties.credit_centre]
role = "credit_centre"
data = "synthetic:{data}"
categorical = [{cats}]
allow_missing = true
[consent]
mode = "demo"
column_categories = ["tax_grade=tax", "industry_section=registration", "district_code=registration"]
[binning]
key_bits = 1024
insecure_test_key = true
min_bin_rows = 30
[lr]
epochs = 2
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""
    sc = config.loads(text)
    out = tmp_path / "run"
    status = run_scenario_in_process(sc, out)
    assert status["status"] == "completed", status
    assert verified(out).ok
    cpts = pd.read_csv(out / "nodes" / "credit_centre" / "points.csv")
    assert any("missing" in str(t) for t in cpts["range"])
    assert set(cpts["column"]) & set(CATEGORICAL)
    with np.load(out / "nodes" / "bank_a" / "test_scores.npz") as z:
        used, points = set(z["aligned_ids"].tolist()), z["points"]
    card, (_b, _c, bte, cte) = in_process_scorecard(sc, used)
    assert np.max(np.abs(card.score(bte.features, cte.features) - points)) < 1e-9


# -- binning parties between relay steps, and a party failing during binning ----------------------


def test_binning_parties_survive_every_step_as_bytes_and_refuse_other_data():
    """A node rebuilds its binning party from state bytes at every step; the result must be the
    same as in memory, and a state handed back with other data is refused."""
    from protocols.binning.bank import BinningBank
    from protocols.binning.centre import BinningCentre, BinningError
    from protocols.binning.config import BinningConfig
    from protocols.common.party import run_local

    rng = np.random.default_rng(3)
    n = 600
    Xb, Xc = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    Xc[rng.random(n) < 0.2, 1] = np.nan
    y = (Xb[:, 0] + Xc[:, 0] + rng.normal(size=n) > 0.5).astype(np.int64)
    cfg = BinningConfig(key_bits=1024, insecure_test_key=True, min_bin_rows=30)

    def fresh() -> dict:
        return {
            "bank": BinningBank("bank", "centre", Xb, ["b0", "b1"], y, cfg),
            "centre": BinningCentre("centre", "bank", Xc, ["c0", "c1", "c2"], cfg),
        }

    def restart(name: str, party):
        if name == "bank":
            return BinningBank.from_state(party.to_state(), Xb, ["b0", "b1"], y, cfg)
        return BinningCentre.from_state(party.to_state(), Xc, ["c0", "c1", "c2"], cfg)

    mem, disk = fresh(), fresh()
    run_local(mem)
    run_local(disk, restart=restart)
    assert disk["bank"].finished and disk["bank"].kept_centre == mem["bank"].kept_centre
    assert disk["centre"].kept == mem["centre"].kept and disk["bank"].iv_report() == mem["bank"].iv_report()
    for col in mem["centre"].kept:
        assert np.array_equal(disk["centre"].woe[col].woe, mem["centre"].woe[col].woe)
    state = disk["bank"].to_state()
    with pytest.raises(BinningError, match="not the data"):
        BinningBank.from_state(state, Xb, ["b0", "b1"], 1 - y, cfg)
    with pytest.raises(BinningError, match="not the data"):
        BinningCentre.from_state(disk["centre"].to_state(), Xc + 1, ["c0", "c1", "c2"], cfg)


def test_centre_failing_during_binning_is_named_and_the_ledger_verifies(data_dir, tmp_path):
    text = scenario_text(data_dir).replace(
        'data = "' + str(data_dir) + '/centre.csv"',
        'data = "' + str(data_dir) + '/centre.csv"\nfail_at_step = "binning/1"',
    )
    assert "fail_at_step" in text  # the planted failure took
    status = run_scenario_in_process(config.loads(text), tmp_path)
    assert status["status"] == "failed" and status["party"] == "credit_centre" and status["step"] == "binning/1"
    assert "injected failure" in status["error"]
    report = verified(tmp_path)
    assert report.ok and report.complete, report.errors
    assert not (tmp_path / "nodes" / "bank" / "points.csv").exists()


def test_no_label_or_bank_woe_row_reaches_the_centre_or_the_coordinator(run):
    """The bank's labels (aligned training order, every encoding) and its per-row WOE values are
    in no message or summary of either node; a planted copy is found first."""
    from leak_support import label_needles

    from parties.vertical.scorecard_phases import woe_aligned

    bank = _nodes(run)["bank"]
    d = woe_aligned(bank)
    needles = label_needles("bank", d["y_train"], "aligned train order")
    needles += feature_needles("bank", d["X_train"], "WOE rows (train)")
    index = NeedleIndex(needles)
    payloads = [
        blob
        for _nid, _req, rep in run["captured"]
        for blob in [transport.read_reply(rep.content)[3]] + [e.payload for e in transport.read_reply(rep.content)[0]]
    ]
    leak = np.packbits(d["y_train"][5 : 5 + 256].astype(bool)).tobytes()
    assert index.find(payloads[len(payloads) // 2] + leak), "a planted bit-packed label chunk was not found"
    leak = np.ascontiguousarray(d["X_train"][:6]).tobytes()
    assert index.find(leak + payloads[0]), "planted WOE rows were not found"
    found = [n.what for blob in payloads for n in index.find(blob)]
    assert not found, found[:10]
