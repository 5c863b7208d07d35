"""Deployment (#16 item 3): SIGKILL the coordinator (the SuperLink and the ServerApp it runs)
mid-training, then ``deploy local --resume``: the run finishes with the model of an uninterrupted
run, the ledger verifies with the provisioned keys (interruption and resumption recorded) and no
process is left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_support import write_subset

from fedcredit import config
from fedcredit.deploy.local import SUPERLINK, DeployError, Deployment, DeployOptions, deploy_local
from fedcredit.ledger import read_records
from parties.in_process import run_scenario_in_process

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1500)]


def test_coordinator_killed_mid_run_resumes_with_the_uninterrupted_model(tmp_path: Path) -> None:
    scenario = write_subset(tmp_path / "data", n_bank=3000)
    # twenty epochs of several batches, so the kill after epoch 1 leaves training to resume (and
    # lands in a streamed epoch, killing the hub under the nodes): streamed, an epoch takes well
    # under a second, and under load one poll of the deployment can take as long (with six
    # epochs the run finished before the poll that was to kill it)
    text = scenario.read_text().replace("epochs = 1\nbatch_size = 8192", "epochs = 20\nbatch_size = 512")
    assert "epochs = 20" in text
    scenario.write_text(text)
    ref = run_scenario_in_process(config.load(scenario), tmp_path / "ref")
    assert ref["status"] == "completed", ref
    out = tmp_path / "run"
    opts = dict(scenario=scenario, out=out, startup_timeout=120, run_timeout=600, poll_seconds=0.2)
    killed: list[int] = []

    def kill_coordinator_after_an_epoch(d: Deployment) -> None:
        ck = out / "checkpoint.json"
        if killed or not ck.exists():
            return
        if json.loads(ck.read_text()).get("epochs", 0) >= 1:
            killed.extend(d.procs.kill(SUPERLINK))  # the SuperLink and its ServerApp subprocess

    with pytest.raises(DeployError, match="SuperLink exited"):
        deploy_local(DeployOptions(**opts), on_poll=kill_coordinator_after_an_epoch)  # type: ignore[arg-type]
    assert killed
    first = json.loads((out / "deploy.json").read_text())
    assert first["left_running"] == []
    assert read_records(out / "ledger.sqlite")[-1].kind != "run_end"

    summary = deploy_local(DeployOptions(**opts, resume=True))  # type: ignore[arg-type]
    assert summary["left_running"] == []
    assert summary["status"]["status"] == "completed", summary["status"]
    assert summary["verification"]["ok"], summary["verification"]
    kinds = [r.kind for r in read_records(out / "ledger.sqlite")]
    assert kinds.count("run_interrupted") == 1 and kinds.count("run_resumed") == 1 and kinds[-1] == "run_end"
    m = json.loads((out / "metrics.json").read_text())
    assert m["resumed"]["segment"] == 1 and m["resumed"]["epochs"] >= 1
    for party in ("bank", "credit_centre"):
        ref_model = json.loads((tmp_path / "ref" / "nodes" / party / "model.json").read_text())
        dep_model = json.loads((out / "nodes" / party / "model.json").read_text())
        assert dep_model["model"] == ref_model["model"], party
    m_ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert m["auc"] == m_ref["auc"]
