"""The untrusted coordinator in a real deployment (#13): ``fedcredit deploy local`` with a tampering
ServerApp (``simulations/tampering_coordinator.py``: the production coordinator behind a
:class:`~simulations.attack_cases.coordinator.Tamper` on the SuperLink's grid). Forging the bank,
substituting its Paillier key and dropping its message are each caught across real TLS, real
SuperNodes and ClientApp processes: the first two refused by the centre's node, the drop named by
``ledger verify``; every run stops cleanly with its ledger verifying record by record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fedcredit.deploy.keys import load_keys
from fedcredit.deploy.local import DeployOptions, deploy_local
from fedcredit.ledger import load_public_key, read_records, verify
from simulations.attack_cases.coordinator import _data

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1500)]

SCENARIO = """
[run]
name = "deploy-attack"
mode = "vertical-lr"
seed = 7
[parties.bank]
role = "bank"
data = "{bank}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre}"
[consent]
mode = "demo"
[lr]
epochs = 1
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("deploy-attack")
    bank, centre = _data(work)
    path = work / "scenario.toml"
    path.write_text(SCENARIO.format(bank=bank, centre=centre))
    return path


@pytest.mark.parametrize(
    "attack, expect",
    [
        ("forge-sender", "signature does not verify"),
        ("key-substitution", "signature does not verify"),
        ("drop", "dropped by the relay"),
    ],
)
def test_coordinator_attack_in_deploy_local(attack: str, expect: str, scenario: Path, tmp_path: Path) -> None:
    os.environ["FEDCREDIT_ATTACK"] = attack  # inherited by the SuperLink's ServerApp process
    # the tampering ServerApp lives in simulations/ (the repository, not the installed package):
    # its process must import it from the checkout, whatever PYTHONPATH the test run had
    saved_path = os.environ.get("PYTHONPATH")
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = root + (os.pathsep + saved_path if saved_path else "")
    try:
        opts = DeployOptions(
            scenario=scenario,
            out=tmp_path / "run",
            startup_timeout=180,
            run_timeout=900,
            server_app="simulations.tampering_coordinator:app",
        )
        summary = deploy_local(opts)
    finally:
        os.environ.pop("FEDCREDIT_ATTACK", None)
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path
    run = tmp_path / "run"
    status = json.loads((run / "status.json").read_text())
    fired = json.loads((run / "attack.json").read_text())
    assert fired["fired"].startswith("hetero_lr/"), fired  # the tamper really acted
    assert status["status"] == "failed" and status["party"] == "credit_centre", status
    keys = load_keys(run / "keys")  # the provisioned keys, not the ones the ledger declares
    report = verify(
        run / "ledger.sqlite",
        public_key=load_public_key(keys.ledger_pub),
        egress=sorted((run / "nodes").glob("*/egress.sqlite")),
        egress_public_keys={p: load_public_key(keys.party(p).egress_pub) for p in ("bank", "credit_centre")},
    )
    assert report.first_bad is None and report.complete, report.errors[:3]  # verifies record by record
    assert summary, "deploy local returned no summary"
    if attack == "drop":
        assert any(expect in e for e in report.errors), report.errors[:5]
    else:
        assert expect in status["error"], status
        refused = [r for r in read_records(run / "nodes" / "credit_centre" / "egress.sqlite") if r.kind == "refused"]
        assert refused and expect in refused[0].payload_text
