"""Resume (#16 item 3): a vertical run whose coordinator is lost mid-training continues from its
last epoch boundary, ends with the model of an uninterrupted run, and its ledger verifies.

The coordinator is "killed" in process by an exception that is not an ``Exception`` (so, like a
SIGKILL, nothing closes the ledger or writes status.json) raised from the grid's tap after the
nodes already answered a step past the checkpoint: the nodes' live state is then ahead of the
checkpoint, and the resumed run must roll back to it. The resumed segment runs on fresh node
contexts, as a new Flower run does in deployment.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import write_vertical_subset
from ledger_support import verified

from fedcredit import config
from fedcredit.ledger import load_public_key, read_records, verify
from parties.common import transport
from parties.in_process import run_scenario_in_process
from simulations.attack_cases.coordinator import Tamper, at_step

N_ROWS = 1500
SEGMENT0_BANK_ENVELOPES: list = []  # signed envelopes the bank sent before the interruption


class CoordinatorKilled(BaseException):  # noqa: N818 - stands for a SIGKILL, not an error
    """The coordinator process vanished: no handler of the coordinator runs."""


SCENARIO = """
[run]
name = "resume"
mode = "vertical-lr"
seed = 42
[parties.bank]
role = "bank"
data = "{bank}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre}"
[consent]
mode = "demo"
[lr]
epochs = 4
batch_size = 256
early_stopping_patience = 0
key_bits = 1024
insecure_test_key = true
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    d = tmp_path_factory.mktemp("rdata")
    write_vertical_subset(d, N_ROWS)
    return config.loads(SCENARIO.format(bank=d / "bank.csv", centre=d / "centre.csv"))


@pytest.fixture(scope="module")
def uninterrupted(scenario, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    status = run_scenario_in_process(scenario, out)
    assert status["status"] == "completed", status
    return out


def kill_after(out: Path, epochs: int, extra_steps: int):
    """A tap that kills the coordinator ``extra_steps`` training steps after checkpoint ``epochs``."""
    seen: list[str] = []

    def tap(node_id: int, request, reply) -> None:
        _, step, _, _ = transport.read_request(request.content)
        ck = out / "checkpoint.json"
        if not ck.exists() or json.loads(ck.read_text()).get("epochs", 0) < epochs:
            return
        if step not in seen:
            seen.append(step)
        if len(seen) > extra_steps:
            raise CoordinatorKilled(step)

    return tap


def model_digests(out: Path) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "nodes").glob("*/model.json")}


@pytest.fixture(scope="module")
def interrupted(scenario, tmp_path_factory) -> Path:
    """A run directory whose coordinator was killed right after epoch 3's streamed step: the nodes
    streamed the whole epoch (the hub recorded its exchanges), the coordinator never recorded the
    step nor the epoch-3 checkpoint, so the run resumes from epoch 2's."""
    out = tmp_path_factory.mktemp("interrupted") / "run"

    def capture(inbox):  # what the coordinator could keep of segment 0, for the replay test
        SEGMENT0_BANK_ENVELOPES.extend(e for e in inbox if e.sender == "bank")
        return inbox

    recorder = Tamper("credit_centre", lambda step, inbox: capture(inbox) if step.startswith("hetero_lr/") else inbox)
    with pytest.raises(CoordinatorKilled):
        run_scenario_in_process(
            scenario, out, tap=kill_after(out, epochs=2, extra_steps=0), prepare_grid=recorder.install
        )
    assert not (out / "status.json").exists()  # nothing ran after the kill
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["training"] == "hetero_lr" and ck["epochs"] == 2 and ck["label"] == "hetero_lr@2"
    interrupted = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
    assert interrupted.intact and not interrupted.complete, interrupted.errors
    return out


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where / "run")
    return where / "run"


@pytest.fixture(scope="module")
def resumed(scenario, interrupted, tmp_path_factory) -> tuple[Path, dict]:
    out = copy_of(interrupted, tmp_path_factory.mktemp("resumed"))
    status = run_scenario_in_process(scenario, out, resume=True)
    return out, status


def test_resumed_run_has_the_uninterrupted_model(resumed, uninterrupted):
    out, status = resumed
    assert status["status"] == "completed", status
    assert model_digests(out) == model_digests(uninterrupted) and len(model_digests(out)) == 2
    m, whole = (json.loads((d / "metrics.json").read_text()) for d in (out, uninterrupted))
    assert m["auc"] == whole["auc"] and m["epochs"] == whole["epochs"] == 4
    assert m["resumed"] == {"segment": 1, "from": "hetero_lr@2", "epochs": 2}
    # the resumed segment trained only the two remaining epochs: fewer round trips than a whole run
    assert m["flower_round_trips"] < whole["flower_round_trips"] / 2


def test_resumed_ledger_records_interruption_and_resumption_and_verifies(resumed):
    out, _ = resumed
    report = verified(out)
    assert report.ok and report.complete, report.errors
    kinds = [r.kind for r in read_records(out / "ledger.sqlite")]
    assert kinds.count("run_start") == 1 and kinds.count("run_end") == 1
    i, j = kinds.index("run_interrupted"), kinds.index("run_resumed")
    assert i < j
    recs = read_records(out / "ledger.sqlite")
    assert recs[i].payload["checkpoint"] == "hetero_lr@2" and recs[i].payload["last_record"]["seq"] == i - 1
    steps = [r.payload["step"] for r in recs[j:] if r.kind == "step"]
    assert steps and all(s.startswith("r1:") for s in steps)
    # the envelopes in flight when the coordinator died are named, as abandoned, not hidden
    assert any("abandoned when run segment 0 was interrupted" in w for w in report.warnings), report.warnings


def test_a_drop_inside_the_resumed_segment_is_still_caught(scenario, interrupted, tmp_path):
    """Planted tamper: the coordinator withholds the bank's envelope to the centre in the resumed
    segment. The interruption's leniency must not cover it: the run stops, and verify names a drop."""
    out = copy_of(interrupted, tmp_path)
    tamper = Tamper("credit_centre", at_step("r1:hetero_lr", 2, lambda inbox: [e for e in inbox if e.sender != "bank"]))
    status = run_scenario_in_process(scenario, out, resume=True, prepare_grid=tamper.install)
    assert tamper.fired == "r1:hetero_lr/2" and tamper.dropped
    assert status["status"] == "failed", status
    report = verified(out)
    assert not report.ok
    assert any("dropped by the relay" in e or "never reached" in e for e in report.errors), report.errors


def test_an_envelope_of_the_interrupted_segment_is_refused_in_the_resumed_one(scenario, interrupted, tmp_path):
    """Planted tamper: replay into the resumed segment an envelope the bank signed before the
    interruption (same phase, same round). The new session (fresh hello nonces) makes the centre
    refuse it, and the refusal is in its log."""
    out = copy_of(interrupted, tmp_path)
    old = SEGMENT0_BANK_ENVELOPES[-1]

    def replay(inbox):
        return [old if e.sender == "bank" else e for e in inbox]

    tamper = Tamper("credit_centre", at_step("r1:hetero_lr", 1, replay))
    status = run_scenario_in_process(scenario, out, resume=True, prepare_grid=tamper.install)
    assert tamper.fired == "r1:hetero_lr/1"
    assert status["status"] == "failed" and status["party"] == "credit_centre", status
    # the signature covers the session id, so the old session's envelope does not verify in the new one
    assert "EnvelopeRefused" in status["error"] and f"sent at step {old.step!r}" in status["error"], status
    assert not old.step.startswith("r1:")
    report = verified(out)
    assert any("refused an envelope" in e for e in report.errors), report.errors


def test_resume_refuses_what_is_not_an_interrupted_run_of_this_scenario(scenario, resumed, interrupted, tmp_path):
    """Bad input gets a clear error and touches nothing: no checkpoint, a finished run, another
    scenario's run, a node checkpoint of another run."""
    from fedcredit.deploy.local import DeployError, Deployment, DeployOptions
    from parties.common.checkpoint import CheckpointError, restore_node_checkpoint

    empty = tmp_path / "empty"
    empty.mkdir()
    status = run_scenario_in_process(scenario, empty, resume=True)
    assert status["status"] == "failed" and status["step"] == "resume" and "checkpoint.json" in status["error"]
    assert not (empty / "ledger.sqlite").exists()

    done, _ = resumed
    before = (done / "ledger.sqlite").read_bytes()
    copy = copy_of(done, tmp_path / "done")
    status = run_scenario_in_process(scenario, copy, resume=True)
    assert status["status"] == "failed" and "already ended" in status["error"], status
    assert json.loads((copy / "status.json").read_text())["status"] == "completed"  # not overwritten
    assert (done / "ledger.sqlite").read_bytes() == before

    other = config.loads(SCENARIO.format(bank="x.csv", centre="y.csv").replace("seed = 42", "seed = 43"))
    status = run_scenario_in_process(other, copy_of(interrupted, tmp_path / "other"), resume=True)
    assert status["status"] == "failed" and "another scenario" in status["error"], status

    (tmp_path / "s.toml").write_text(scenario.source_text)
    with pytest.raises(DeployError, match="no ledger.sqlite"):
        Deployment(DeployOptions(scenario=tmp_path / "s.toml", out=empty, resume=True))

    class Node:  # the NodeRuntime surface restore_node_checkpoint reads
        name, dir, scenario = "bank", interrupted / "nodes" / "bank", scenario

    ck = json.loads((interrupted / "checkpoint.json").read_text())
    with pytest.raises(CheckpointError, match="no checkpoint"):
        restore_node_checkpoint(Node(), "0" * 32, ck["label"])  # type: ignore[arg-type]


def test_round_trips_of_a_resumed_run_count_both_segments_per_phase(resumed):
    from fedcredit.deploy.local import epoch_latency

    out, _ = resumed
    lat = epoch_latency(json.loads((out / "metrics.json").read_text()), out / "ledger.sqlite", None)
    assert "hetero_lr" in lat["round_trips_by_phase"] and not any(":" in k for k in lat["round_trips_by_phase"])
    steps = [r.payload["step"] for r in read_records(out / "ledger.sqlite") if r.kind == "step"]
    exchange = [s for s in steps if "." in s.rsplit("/", 1)[-1]]  # streamed inside a step: not a round trip
    assert exchange and lat["streamed_exchanges"] == len(exchange)
    assert lat["round_trips_by_phase"]["hetero_lr"] == sum(1 for s in steps if "hetero_lr/" in s and s not in exchange)


def test_secureboost_resumes_from_its_last_phase_end(scenario, tmp_path):
    """A SecureBoost coordinator lost before the first tree boundary resumes from ``after:split``
    and retrains; the scores equal an uninterrupted run's (per tree: test_resume_secureboost.py)."""
    text = scenario.source_text.replace('mode = "vertical-lr"', 'mode = "secureboost"').split("[lr]")[0]
    text += "[secureboost]\nn_trees = 2\nmax_depth = 2\nmax_bins = 8\nkey_bits = 1024\ninsecure_test_key = true\n"
    sb = config.loads(text)
    whole = run_scenario_in_process(sb, tmp_path / "whole")
    assert whole["status"] == "completed", whole
    out = tmp_path / "run"
    seen: list[str] = []

    def tap(node_id: int, request, reply) -> None:
        _, step, _, _ = transport.read_request(request.content)
        if step.startswith("secureboost/") and step not in seen:
            seen.append(step)
        if len(seen) > 2:
            raise CoordinatorKilled(step)

    with pytest.raises(CoordinatorKilled):
        run_scenario_in_process(sb, out, tap=tap)
    assert json.loads((out / "checkpoint.json").read_text())["label"] == "after:split"
    status = run_scenario_in_process(sb, out, resume=True)
    assert status["status"] == "completed", status
    assert verified(out).ok
    m, ref = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "whole"))
    assert m["auc"] == ref["auc"] and m["ks"] == ref["ks"]
