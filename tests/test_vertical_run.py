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

from fedcredit import config
from fedcredit.data.schema import LABEL_COLUMN
from fedcredit.features import LocalPreprocessor
from fedcredit.ledger import load_public_key, verify
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


def verified(out: Path):
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )


def test_in_process_run_outputs_model_parts_and_a_verifying_ledger(subset, tmp_path):
    sc = config.loads(scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv"))
    captured: list[tuple[int, object, object]] = []
    status = run_scenario_in_process(sc, tmp_path, tap=lambda nid, req, rep: captured.append((nid, req, rep)))
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
    _assert_nothing_private_left_a_node(captured, subset, _sizes(m))


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


def _assert_nothing_private_left_a_node(captured, subset, sizes: set[int]) -> None:
    """``sizes``: the row counts of the aligned train/validation/test sets; an array of one of
    these lengths carries one value per sample."""
    centre_raw = subset["centre"].iloc[:, 1:].to_numpy(dtype=np.float64)
    pre = LocalPreprocessor().fit(centre_raw)
    centre_values = np.concatenate([pre.transform(centre_raw)[:40].ravel(), centre_raw[:40].ravel()])
    patterns = {np.float64(v).tobytes() for v in centre_values if v not in (0.0, 1.0, -1.0, 2.0, -2.0)}
    labels = subset["bank"][LABEL_COLUMN].to_numpy()
    ids = list(subset["bank"]["uscc"][:200]) + list(subset["centre"]["uscc"][:200])
    n_envelopes = 0
    for _nid, _req, rep in captured:
        outbox, _, summary, summary_bytes = transport.read_reply(rep.content)
        # summaries: aggregate numbers only
        assert not any(u.encode() in summary_bytes for u in ids)
        for env in outbox:
            n_envelopes += 1
            blob = env.payload
            assert not any(u.encode() in blob for u in ids), f"a plaintext USCC left {env.sender} in {env.kind}"
            kind, fields = _decoded_fields(blob)
            for name, shape in _arrays(fields):
                if shape and shape[0] in sizes and kind not in PER_SAMPLE_ALLOWED:
                    pytest.fail(f"{env.sender} sent a per-sample array {kind}.{name} {shape}")
            if env.sender == "credit_centre":  # partial scores are sealed to the bank now (#13)
                for p in patterns:
                    assert p not in blob, f"a centre feature value left the centre in {kind}"
            if env.sender == "bank":
                assert labels.astype(np.int8).tobytes() not in blob
                assert labels.astype(np.float64).tobytes()[:512] not in blob
    assert n_envelopes > 10


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
            extra_centre='fail_at_step = "hetero_lr/4"',
            lr=FAST_KEYS,
        )
    )
    status = run_scenario_in_process(sc, tmp_path)
    assert status["status"] == "failed"
    assert status["party"] == "credit_centre" and status["step"] == "hetero_lr/4"
    assert "injected failure" in status["error"]
    report = verified(tmp_path)
    assert report.ok and report.complete, report.errors
    kinds = [
        r.kind
        for r in __import__("fedcredit.ledger", fromlist=["read_records"]).read_records(tmp_path / "ledger.sqlite")
    ]
    assert kinds[0] == "run_start" and "psi" in kinds and kinds[-2:] == ["failure", "run_end"]


def test_party_that_stops_answering_is_named(subset, tmp_path):
    sc = config.loads(scenario_text(subset["dir"] / "bank.csv", subset["dir"] / "centre.csv", lr=FAST_KEYS))

    def take_centre_down(grid):
        centre_node = 1001  # partition 1 = credit_centre (second party in the file)
        orig = grid.tap

        def tap(nid, req, rep):
            if req.metadata.group_id == "hetero_lr/2" and nid == centre_node:
                grid.down.add(centre_node)

        grid.tap = tap if orig is None else orig

    status = run_scenario_in_process(sc, tmp_path, prepare_grid=take_centre_down)
    assert status["status"] == "failed" and status["party"] == "credit_centre"
    assert status["step"] == "hetero_lr/3" and "no reply" in status["error"]
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
    status = run_scenario_in_process(
        config.loads(text), tmp_path, tap=lambda nid, req, rep: captured.append((nid, req, rep))
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
    _assert_nothing_private_left_a_node(captured, subset, _sizes(m))


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
