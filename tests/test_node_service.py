"""The node service (``fedcredit node serve``) and the forwarding ClientApp.

* the channel: a counter handler keeps its state across messages and across a restart of the
  service (state persisted after every message), a raising handler leaves the state untouched;
* who may connect: socket 0600 in a 0700 directory; a loose directory is refused; a peer uid
  the service was not told about gets no answer;
* a whole vertical run through real ``fedcredit node serve`` processes: same model as the
  in-process run, and the forwarding side never opens a data file (audit hook).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedcredit import config
from fedcredit.ledger import verify
from parties.common import local_channel as lc
from parties.common.forwarder import FORWARD_ERROR, forward, ping
from parties.common.grid import InProcessGrid, server_context
from parties.common.node_service import NodeService
from parties.in_process import run_scenario_in_process
from parties.server_app import coordinate
from tests.deploy_support import write_subset

pytestmark = pytest.mark.timeout(600)


def _counter_app() -> ClientApp:
    app = ClientApp()

    @app.query("count")
    def count(message: Message, context: Context) -> Message:
        rec = context.state.config_records.setdefault("c", ConfigRecord({"n": 0}))
        rec["n"] = int(rec["n"]) + 1
        if message.content.config_records["q"].get("boom"):
            raise RuntimeError("planted failure")
        return Message(
            RecordDict({"r": ConfigRecord({"n": rec["n"], "party": context.node_config["party"]})}), reply_to=message
        )

    return app


def _query(boom: bool = False) -> Message:
    server_context()  # Flower stamps a new Message with the running task's identity (set it here too)
    msg = Message(
        RecordDict({"q": ConfigRecord({"boom": boom})}), dst_node_id=7, message_type="query.count", group_id="g"
    )
    msg.metadata.__dict__["_message_id"] = msg.object_id  # as the SuperLink sets it
    return msg


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short private directory (Unix socket paths are limited to 107 characters)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="fcn-"))
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def _start(service: NodeService) -> threading.Thread:
    service.bind()
    t = threading.Thread(target=service.serve_forever, daemon=True)
    t.start()
    return t


def _ctx() -> Context:
    server_context()  # TaskIdentity for creating messages
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={"k": "v"})


def test_state_survives_messages_failures_and_a_restart(short_dir: Path) -> None:
    sock, state = short_dir / "s" / "node.sock", short_dir / "state"
    svc = NodeService(_counter_app(), {"party": "bank"}, sock, state)
    t = _start(svc)
    ctx = _ctx()
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert ping(sock)["party"] == "bank"
        replies = [forward(sock, _query(), ctx) for _ in range(3)]
        assert [r.content.config_records["r"]["n"] for r in replies] == [1, 2, 3]
        assert replies[0].content.config_records["r"]["party"] == "bank"  # the service's node config
        bad = forward(sock, _query(boom=True), ctx)  # the handler raises after incrementing
        assert bad.has_error() and "planted failure" in bad.error.reason
    finally:
        svc.stop()
        t.join(5)
    assert not sock.exists()
    # a new service process (here: object) on the same state directory continues at 3, not 4
    svc2 = NodeService(_counter_app(), {"party": "bank"}, sock, state)
    t2 = _start(svc2)
    try:
        assert forward(sock, _query(), ctx).content.config_records["r"]["n"] == 4
    finally:
        svc2.stop()
        t2.join(5)


def test_no_service_gives_an_error_reply_naming_the_socket(short_dir: Path) -> None:
    reply = forward(short_dir / "nothing.sock", _query(), _ctx(), wait=0.5)
    assert reply.has_error() and reply.error.code == FORWARD_ERROR
    assert "nothing.sock" in reply.error.reason and "fedcredit node serve" in reply.error.reason


def test_loose_socket_directory_is_refused(short_dir: Path) -> None:
    loose = short_dir / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    svc = NodeService(_counter_app(), {"party": "bank"}, loose / "node.sock", short_dir / "state")
    with pytest.raises(lc.ChannelError, match="lets other accounts reach"):
        svc.bind()


def test_unknown_peer_uid_is_refused(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = short_dir / "s" / "node.sock"
    svc = NodeService(_counter_app(), {"party": "bank"}, sock, short_dir / "state")
    monkeypatch.setattr(lc, "peer_uid", lambda conn: os.getuid() + 4242)  # plant a foreign peer
    t = _start(svc)
    try:
        reply = forward(sock, _query(), _ctx())
        assert reply.has_error() and f"uid {os.getuid() + 4242} may not use" in reply.error.reason
        assert svc.handled == 0
    finally:
        svc.stop()
        t.join(5)


# -- a whole run through real `fedcredit node serve` processes -----------------------------------
def _serve(cfg: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fedcredit.cli.main", "node", "serve", "--config", str(cfg)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _run_through_services(
    tmp_path: Path, short_dir: Path, restart_bank_before: str | None = None
) -> tuple[dict, Path, list[str], list[subprocess.Popen]]:
    """Run the deploy-test scenario with each party in its own `fedcredit node serve` process.

    ``restart_bank_before``: SIGKILL the bank's service just before the step of that name
    reaches it, and start a new one a second later (the forwarder waits for it).
    Returns (status, run dir, data files the forwarding side opened, every service process).
    """
    scenario_path = tmp_path / "data" / "scenario.toml"
    scenario = config.load(scenario_path)
    out = tmp_path / "svc"
    sockets: dict[int, Path] = {}
    cfgs: dict[int, Path] = {}
    procs: dict[int, subprocess.Popen] = {}
    every: list[subprocess.Popen] = []
    data_files = {str(tmp_path / "data" / "bank.csv"), str(tmp_path / "data" / "centre.csv")}
    bank_node = 1000 + [s.name for s in scenario.parties].index("bank")
    opened: list[str] = []
    from parties.common import peers

    keys = peers.provision(scenario, out)  # each operator's node key and trusted peers file
    try:
        for i, spec in enumerate(scenario.parties):
            cfgs[1000 + i] = tmp_path / f"{spec.name}.toml"
            sockets[1000 + i] = short_dir / spec.name / "node.sock"
            cfgs[1000 + i].write_text(
                tomli_w.dumps(
                    {
                        "party": spec.name,
                        "role": spec.role,
                        "data": scenario.resolve(spec.data),
                        "node-dir": str(out / "nodes" / spec.name),
                        "scenario": str(scenario_path),
                        "egress-key": str(keys / spec.name / peers.KEY_FILE),
                        "peer-keys": str(keys / peers.PEERS_FILE),
                        "socket": str(sockets[1000 + i]),
                    }
                )
            )
            procs[1000 + i] = _serve(cfgs[1000 + i], tmp_path / f"{spec.name}.log")
            every.append(procs[1000 + i])
        deadline = time.monotonic() + 60
        for s in sockets.values():
            while True:
                try:
                    ping(s)
                    break
                except lc.ChannelError:
                    assert time.monotonic() < deadline, "node service did not come up"
                    assert all(p.poll() is None for p in procs.values()), [
                        p.read_text() for p in tmp_path.glob("*.log")
                    ]
                    time.sleep(0.2)

        def audit(event: str, args: tuple) -> None:
            if event == "open" and args and str(args[0]) in data_files:
                opened.append(str(args[0]))

        sys.addaudithook(audit)  # cannot be removed: it only records, and only the two CSV paths
        (tmp_path / "data" / "bank.csv").read_bytes()  # planted: the hook sees an open of a data file
        assert opened, "the audit hook does not see opens"
        opened.clear()

        killed: list[int] = []

        def restart_bank() -> None:
            procs[bank_node] = _serve(cfgs[bank_node], tmp_path / "bank.restarted.log")
            every.append(procs[bank_node])

        def forwarder(message: Message, context: Context) -> Message:
            if context.node_id == bank_node and message.metadata.group_id == restart_bank_before:
                if not killed:
                    killed.append(procs[bank_node].pid)
                    procs[bank_node].kill()  # SIGKILL: no clean shutdown, a stale socket file stays
                    procs[bank_node].wait()
                    threading.Timer(1.0, restart_bank).start()
            return forward(sockets[context.node_id], message, context)

        grid = InProcessGrid(forwarder, len(scenario.parties))
        status = coordinate(grid, server_context(), scenario, out)
    finally:
        time.sleep(1.5)  # a pending restart timer
        for p in every:
            if p.poll() is None:
                p.terminate()
        for p in every:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return status, out, opened, every


def _same_model(ref: Path, out: Path) -> None:
    m_ref = json.loads((ref / "metrics.json").read_text())
    m_svc = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "ks", "gini", "log_loss"):
        assert m_svc[key] == pytest.approx(m_ref[key], abs=1e-9), key
    assert [h["train_loss"] for h in m_svc["history"]] == pytest.approx([h["train_loss"] for h in m_ref["history"]])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deploy-test scenario's data and its in-process run (the model to reproduce)."""
    root = tmp_path_factory.mktemp("node-service-ref")
    scenario = config.load(write_subset(root / "data"))
    status = run_scenario_in_process(scenario, root / "ref")
    assert status["status"] == "completed", status
    return root


def _copy_data(reference: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(reference / "data", tmp_path / "data")
    text = (tmp_path / "data" / "scenario.toml").read_text().replace(str(reference / "data"), str(tmp_path / "data"))
    (tmp_path / "data" / "scenario.toml").write_text(text)


def test_vertical_run_through_node_services_matches_in_process(
    reference: Path, tmp_path: Path, short_dir: Path
) -> None:
    _copy_data(reference, tmp_path)
    status, out, opened, procs = _run_through_services(tmp_path, short_dir)
    assert status["status"] == "completed", status
    assert opened == [], f"the forwarding side opened data files: {opened}"
    assert all(p.returncode == 0 for p in procs), [p.read_text() for p in tmp_path.glob("*.log")]
    _same_model(reference / "ref", out)
    assert all((out / "nodes" / p / "service" / "state" / "run-1.state").exists() for p in ("bank", "credit_centre"))
    assert (out / "nodes" / "bank" / "model.json").exists()
    assert verify(out / "ledger.sqlite", egress=sorted((out / "nodes").glob("*/egress.sqlite"))).ok


def test_bank_service_killed_mid_epoch_and_restarted_gives_the_same_model(
    reference: Path, tmp_path: Path, short_dir: Path
) -> None:
    _copy_data(reference, tmp_path)
    status, out, _opened, procs = _run_through_services(tmp_path, short_dir, restart_bank_before="hetero_lr/2")
    assert procs[0].returncode == -9, "the bank's first service was not SIGKILLed"  # the planted crash happened
    assert len(procs) == 3, "the bank's service was not restarted"
    assert status["status"] == "completed", status
    restarted = (tmp_path / "bank.restarted.log").read_text()
    assert "stopped after" in restarted and "stopped after 0 message(s)" not in restarted, restarted[-2000:]
    _same_model(reference / "ref", out)
    report = verify(out / "ledger.sqlite", egress=sorted((out / "nodes").glob("*/egress.sqlite")))
    assert report.ok, report.errors
