"""The vertical run through the real Flower apps: outputs, ledger, privacy of what nodes send, failures.

Most tests use :func:`parties.in_process.run_scenario_in_process` (the real coordinator and
ClientApp on :class:`parties.common.grid.InProcessGrid`, without Ray) so every reply a node sends
can be captured; one test runs Flower's simulation engine itself.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import write_vertical_subset
from leak_support import NeedleIndex, node_needles
from ledger_support import verified

from fedcredit import config
from fedcredit.config.sections import RunSettings
from fedcredit.features import LocalPreprocessor
from parties.common import transport
from parties.in_process import run_scenario_in_process
from protocols.common import wire

N_ROWS = 1500


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> dict:
    """The first N_ROWS bank customers of default_credit and the centre's rows for them, as CSVs."""
    d = tmp_path_factory.mktemp("vdata")
    b, c = write_vertical_subset(d, N_ROWS)
    return {"dir": d, "bank": b, "centre": c}


def scenario_text(bank: Path, centre: Path, *, extra_centre: str = "", lr: str = "", name: str = "t") -> str:
    return f"""
[run]
name = "{name}"
mode = "vertical-lr"
seed = 42
[parties.bank]
role = "bank"
data = "{bank}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre}"
{extra_centre}
[consent]
mode = "demo"
[lr]
epochs = 2
batch_size = 512
{lr}
"""


FAST_KEYS = "key_bits = 1024\ninsecure_test_key = true"


@pytest.fixture(scope="module")
def lr_run(subset, tmp_path_factory) -> dict:
    """One vertical-LR run on the in-process grid: every reply captured, the grid kept (its node
    contexts hold each node's stored state, where the leak needles come from)."""
    out = tmp_path_factory.mktemp("lr-run")
    sc = config.loads(scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv"))
    captured: list[tuple[int, object, object]] = []
    grids: list = []
    status = run_scenario_in_process(
        sc, out, tap=lambda nid, req, rep: captured.append((nid, req, rep)), prepare_grid=grids.append
    )
    return {"status": status, "out": out, "captured": captured, "grid": grids[0], "scenario": sc}


def test_in_process_run_outputs_model_parts_and_a_verifying_ledger(subset, lr_run):
    tmp_path, status, captured = lr_run["out"], lr_run["status"], lr_run["captured"]
    assert status["status"] == "completed", status
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["auc"] > 0.68 and 0 < m["ks"] < 1 and m["gini"] == pytest.approx(2 * m["auc"] - 1, abs=1e-4)
    assert m["rows_intersection"] == N_ROWS and m["epochs"] >= 1
    report = verified(tmp_path)
    assert report.ok and report.complete, report.errors
    # each party keeps only its own model part
    bank_model = json.loads((tmp_path / "nodes/bank/model.json").read_text())
    centre_model = json.loads((tmp_path / "nodes/credit_centre/model.json").read_text())
    assert bank_model["feature_names"] == list(subset["bank"].columns[2:])
    assert centre_model["feature_names"] == list(subset["centre"].columns[1:])
    assert len(centre_model["model"]["weights"]) == len(centre_model["feature_names"])
    _assert_nothing_private_left_a_node(captured, lr_run["grid"], lr_run["scenario"], tmp_path, _sizes(m))


def _nodes(grid, scenario, out: Path) -> dict:
    """Each node's runtime (its stored state) after the run, by name."""
    from parties.common.node import NodeRuntime

    nodes = [NodeRuntime(ctx, scenario, out) for ctx in grid.contexts.values()]
    return {n.name: n for n in nodes}


def _all_needles(grid, scenario, out: Path) -> list:
    needles = [n for node in _nodes(grid, scenario, out).values() for n in node_needles(node)]
    owners = {n.owner for n in needles}
    assert owners == {"bank", "credit_centre"}, owners
    assert any("labels" in n.what for n in needles) and any("fixed-point" in n.what for n in needles)
    return needles


def _leaks(captured, index: NeedleIndex) -> list[str]:
    """Every needle found in a node's summary or in an envelope it sent, with where."""
    found = []
    for nid, req, rep in captured:
        outbox, _, _summary, summary_bytes = transport.read_reply(rep.content)
        for n in index.find(summary_bytes):
            found.append(f"{n.owner}'s {n.what} in the summary node {nid} sent at {req.metadata.group_id}")
        for env in outbox:
            for n in index.find(env.payload):
                found.append(f"{n.owner}'s {n.what} in {env.kind} from {env.sender} to {env.recipient}")
    return found


def _sizes(m: dict) -> set[int]:
    return {m["rows_train"], m["rows_validation"], m["rows_test"], m["rows_intersection"]}


def _decoded_fields(payload: bytes) -> tuple[str, dict]:
    kind = wire.message_type(payload)
    header_len = int.from_bytes(payload[4:8], "little")
    header = json.loads(payload[8 : 8 + header_len])
    return kind, header["fields"]


def _arrays(fields: dict) -> list[tuple[str, list]]:
    """(name, shape) of every array field, recursively."""
    out = []

    def walk(name, v):
        if isinstance(v, dict) and "__array__" in v:
            out.append((name, v["__array__"][1]))
        elif isinstance(v, dict) and "__dict__" in v:
            for k, x in v["__dict__"].items():
                walk(f"{name}.{k}", x)
        elif isinstance(v, list):
            for x in v:
                walk(name, x)

    for k, v in fields.items():
        walk(k, v)
    return out


# Message kinds that may carry one value per sample, and why (docs/protocols/*.md):
PER_SAMPLE_ALLOWED = {
    "SplitPlan",  # bank -> centre: which aligned positions are test/validation (no labels)
    "SealedScoreRequest",  # bank -> centre: positions of the rows to score
    "SealedPartialScores",  # centre -> bank at evaluation only, sealed to the bank: the documented scoring leak
    "SbDirectionQuery",  # bank -> centre at SecureBoost scoring: positions of the rows to route
    "SbSealedDirectionReply",  # centre -> bank, sealed: left/right bit per (row, host node): documented
}


def _assert_nothing_private_left_a_node(captured, grid, scenario, out: Path, sizes: set[int]) -> None:
    """No label, feature value or USCC of either node, in any encoding (tests/leak_support.py), in any
    summary or message that reached the coordinator; no undocumented per-sample array. ``sizes``:
    the row counts of the aligned train/validation/test sets (an array of one of these lengths
    carries one value per sample)."""
    index = NeedleIndex(_all_needles(grid, scenario, out))
    leaks = _leaks(captured, index)
    assert not leaks, leaks[:10]
    n_envelopes = 0
    for _nid, _req, rep in captured:
        outbox = transport.read_reply(rep.content)[0]
        for env in outbox:
            n_envelopes += 1
            kind, fields = _decoded_fields(env.payload)
            for name, shape in _arrays(fields):
                if shape and shape[0] in sizes and kind not in PER_SAMPLE_ALLOWED:
                    pytest.fail(f"{env.sender} sent a per-sample array {kind}.{name} {shape}")
    assert n_envelopes > 10


def test_planted_leaks_in_summaries_and_messages_are_caught(lr_run):
    """Positive control for the search above: leaks planted (by code independent of the needle
    builder) into a copy of a real summary and a real envelope, in each encoding, are all found."""
    nodes = _nodes(lr_run["grid"], lr_run["scenario"], lr_run["out"])
    index = NeedleIndex(_all_needles(lr_run["grid"], lr_run["scenario"], lr_run["out"]))
    assert _leaks(lr_run["captured"], index) == []  # the honest run is clean
    from parties.vertical.phase import COMMON_ROWS, PREPROCESSOR, TEST_MASK, VAL_MASK, get_array

    bank, centre = nodes["bank"], nodes["credit_centre"]
    rows = get_array(bank, COMMON_ROWS)
    train = rows[~get_array(bank, TEST_MASK) & ~get_array(bank, VAL_MASK)]
    y_al, y_tr = bank.data().labels[rows], bank.data().labels[train]
    c_rows = get_array(centre, COMMON_ROWS)
    c_train = c_rows[~get_array(centre, TEST_MASK) & ~get_array(centre, VAL_MASK)]
    pre = LocalPreprocessor.from_dict(json.loads(str(centre.get(PREPROCESSOR))))
    Xc = pre.transform(centre.data().features[c_train])
    plants = {
        "labels in a JSON summary (aligned train order)": json.dumps({"train": 1, "y": y_tr[:200].tolist()}).encode(),
        "labels chunk int8 (aligned order)": y_al[300:500].astype(np.int8).tobytes(),
        "labels chunk float64": y_tr[100:300].astype(np.float64).tobytes(),
        "labels chunk float32": y_tr[7:207].astype(np.float32).tobytes(),
        "labels bit-packed from an odd row": np.packbits(y_tr[13:213].astype(bool)).tobytes(),
        "centre standardised features float64": Xc[:4].ravel().tobytes(),
        "centre standardised column float32": np.ascontiguousarray(Xc[:20, 2]).astype(np.float32).tobytes(),
        "centre features fixed-point 12-bit int64": np.rint(Xc[:6] * 4096).astype(np.int64).tobytes(),
        "centre features in a JSON summary": json.dumps({"x": Xc[:3].tolist()}).encode(),
        "centre fixed-point features in compact JSON": json.dumps(
            {"x": np.rint(Xc[:3] * 4096).astype(int).ravel().tolist()}, separators=(",", ":")
        ).encode(),
        "a bank USCC": json.dumps({"id": bank.data().ids[rows[5]]}).encode(),
    }
    rng = np.random.default_rng(0)
    missed = []
    for name, leak in plants.items():
        blob = rng.bytes(int(rng.integers(1, 500))) + leak + rng.bytes(300)
        if not index.find(blob):
            missed.append(name)
    assert not missed, f"planted leaks not found: {missed}"


def test_zero_intersection_stops_with_a_clear_error_and_a_verifying_ledger(subset, tmp_path):
    other = subset["centre"].copy()
    from fedcredit.data import uscc

    other["uscc"] = [uscc.from_index(50_000_000 + i) for i in range(len(other))]
    other.to_csv(tmp_path / "other.csv", index=False)
    sc = config.loads(scenario_text(subset["dir"] / "bank.csv", tmp_path / "other.csv", lr=FAST_KEYS))
    status = run_scenario_in_process(sc, tmp_path / "run")
    assert status["status"] == "failed" and status["party"] == "bank" and status["step"] == "align"
    assert "intersection" in status["error"] and "empty" in status["error"]
    report = verified(tmp_path / "run")
    assert report.ok and report.complete, report.errors


def test_party_failing_mid_epoch_is_named_and_earlier_records_survive(subset, tmp_path):
    sc = config.loads(
        scenario_text(
            subset["dir"] / "bank.csv",
            subset["dir"] / "centre.csv",
            extra_centre='fail_at_step = "hetero_lr/1.4"',  # exchange 4 of the streamed first epoch
            lr=FAST_KEYS,
        )
    )
    status = run_scenario_in_process(sc, tmp_path)
    assert status["status"] == "failed"
    assert status["party"] == "credit_centre" and status["step"] == "hetero_lr/1.4"
    assert "injected failure" in status["error"]
    report = verified(tmp_path)
    assert report.ok and report.complete, report.errors
    kinds = [
        r.kind
        for r in __import__("fedcredit.ledger", fromlist=["read_records"]).read_records(tmp_path / "ledger.sqlite")
    ]
    assert kinds[0] == "run_start" and "psi" in kinds and kinds[-2:] == ["failure", "run_end"]


def test_party_that_stops_answering_is_named(subset, tmp_path):
    text = scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv", lr=FAST_KEYS)
    sc = config.loads(text.replace("[run]\n", "[run]\nstep_timeout = 30\n", 1))
    assert sc.settings(RunSettings).step_timeout == 30

    def take_centre_down(grid):
        centre_node = 1001  # partition 1 = credit_centre (second party in the file)
        orig = grid.tap

        def tap(nid, req, rep):
            if req.metadata.group_id == "hetero_lr/2" and nid == centre_node:
                grid.down.add(centre_node)

        grid.tap = tap if orig is None else orig

    status = run_scenario_in_process(sc, tmp_path, prepare_grid=take_centre_down)
    assert status["status"] == "failed" and status["party"] == "credit_centre"
    # epoch 3 streams: the bank joins the hub, the centre never does (after step_timeout, at most 120 s)
    assert status["step"] == "hetero_lr/3.1" and "did not join the streamed step within 30 s" in status["error"]
    assert verified(tmp_path).ok


def test_bad_centre_file_fails_at_hello_naming_file_row_and_column(subset, tmp_path):
    bad = subset["centre"].copy().astype({"AGE": object})
    bad.loc[7, "AGE"] = "thirty"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    sc = config.loads(scenario_text(subset["dir"] / "bank.csv", tmp_path / "bad.csv", lr=FAST_KEYS))
    status = run_scenario_in_process(sc, tmp_path / "run")
    assert status["status"] == "failed" and status["party"] == "credit_centre" and status["step"] == "hello"
    assert "bad.csv" in status["error"] and "AGE" in status["error"] and "8" in status["error"]
    assert verified(tmp_path / "run").ok


def _processes_mentioning(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.mark.flower
def test_flower_simulation_engine_run_and_no_processes_left(subset, tmp_path):
    from fedcredit.cli.simulate_cmd import run_simulation_scenario

    path = tmp_path / "s.toml"
    path.write_text(scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv"))
    status = run_simulation_scenario(path, tmp_path / "run")
    assert status["status"] == "completed", status
    assert status["verification"]["ok"], status["verification"]
    m = json.loads((tmp_path / "run/metrics.json").read_text())
    assert m["auc"] > 0.68 and "centralised" in m and m["centralised"]["lr_joint"]["auc"] > 0.6
    # this run's Ray lived under its own RAY_TMPDIR; nothing of it may outlive the run
    import os

    assert _processes_mentioning(os.environ["RAY_TMPDIR"]) == []
    with pytest.raises(FileExistsError):  # an earlier run's ledger is never overwritten
        run_simulation_scenario(path, tmp_path / "run")


def test_secureboost_run_in_process_keeps_each_partys_splits_local(subset, tmp_path):
    text = (
        scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv")
        .replace('mode = "vertical-lr"', 'mode = "secureboost"')
        .split("[lr]")[0]
        + """
[secureboost]
n_trees = 2
max_depth = 3
key_bits = 1024
insecure_test_key = true
n_workers = 1
"""
    )
    captured: list = []
    grids: list = []
    sc = config.loads(text)
    status = run_scenario_in_process(
        sc, tmp_path, tap=lambda nid, req, rep: captured.append((nid, req, rep)), prepare_grid=grids.append
    )
    assert status["status"] == "completed", status
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["auc"] > 0.68 and m["trees"] == 2
    assert verified(tmp_path).ok
    centre_model = json.loads((tmp_path / "nodes/credit_centre/model.json").read_text())
    bank_model = json.loads((tmp_path / "nodes/bank/model.json").read_text())
    assert centre_model["model"]["type"] == bank_model["model"]["type"] == "secureboost"
    # the bank's importance names only its own features; the centre's only its own
    fi = m["feature_importance"]
    assert set(fi["bank"]["guest"]["split_count"]) == set(subset["bank"].columns[2:])
    _assert_nothing_private_left_a_node(captured, grids[0], sc, tmp_path, _sizes(m))


def test_centre_refuses_bad_consent_tokens_both_drop_them_and_the_ledger_counts_them(subset, tmp_path):
    from fedcredit.ledger import read_records

    text = scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv", lr=FAST_KEYS)
    shares = "demo_revoked = 0.04\ndemo_expired = 0.03\ndemo_wrong_purpose = 0.02\ndemo_out_of_scope = 0.02\ndemo_forged = 0.02"
    text = text.replace('mode = "demo"', f'mode = "demo"\ndemo_dir = "{tmp_path / "demo"}"\n{shares}').replace(
        "epochs = 2", "epochs = 1"
    )
    status = run_scenario_in_process(config.loads(text), tmp_path / "run")
    assert status["status"] == "completed", status
    out = tmp_path / "run"
    records = read_records(out / "ledger.sqlite")
    consent = next(r.payload for r in records if r.kind == "consent_check")
    refused = consent["refused"]
    assert set(refused) == {"revoked", "expired", "wrong_purpose", "out_of_scope", "forged"}
    assert refused["revoked"] > 30 and min(refused.values()) > 10, refused
    assert consent["mode"] == "demo" and consent["checked"] == N_ROWS
    assert consent["accepted"] == N_ROWS - sum(refused.values())
    # forged tokens name no verified issuer: they count under "(unknown)"
    by_issuer = consent["by_issuer"]
    assert by_issuer["(unknown)"]["refused"] == refused["forged"]
    assert by_issuer["fedcredit-demo-issuer"]["refused"] == sum(refused.values()) - refused["forged"]
    psi = next(r.payload for r in records if r.kind == "psi")
    assert psi["bank"]["intersection"] == N_ROWS  # demo: every firm has a token, the centre judges them
    # the training rows are the accepted ones only, on both sides
    assert json.loads((out / "metrics.json").read_text())["rows_intersection"] == consent["accepted"]
    assert verified(out).ok
    tmp_path = out
    # the ledger holds counts, never the refused ids
    blob = (tmp_path / "ledger.sqlite").read_bytes()
    assert not any(u.encode() in blob for u in subset["bank"]["uscc"][:300])


def test_client_app_registers_every_horizontal_action_lazily():
    from parties import client_app
    from parties.horizontal import client as horizontal_client

    assert set(client_app.HORIZONTAL_QUERIES) == set(horizontal_client.QUERIES)
