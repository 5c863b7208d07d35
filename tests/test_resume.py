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
from pathlib import Path

import pytest
from conftest import write_vertical_subset

from fedcredit import config
from fedcredit.ledger import load_public_key, read_records, verify
from parties.common import transport
from parties.in_process import run_scenario_in_process

N_ROWS = 1500


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


def verified(out: Path):
    return verify(
        out / "ledger.sqlite",
        public_key=load_public_key(out / "coordinator_pub.pem"),
        egress=sorted((out / "nodes").glob("*/egress.sqlite")),
    )


@pytest.fixture(scope="module")
def resumed(scenario, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("resumed")
    with pytest.raises(CoordinatorKilled):
        run_scenario_in_process(scenario, out, tap=kill_after(out, epochs=2, extra_steps=3))
    assert not (out / "status.json").exists()  # nothing ran after the kill
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["training"] == "hetero_lr" and ck["epochs"] == 2 and ck["label"] == "hetero_lr@2"
    interrupted = verify(out / "ledger.sqlite", public_key=load_public_key(out / "coordinator_pub.pem"))
    assert interrupted.intact and not interrupted.complete, interrupted.errors
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
