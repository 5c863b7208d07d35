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
    reply = forward(short_dir / "nothing.sock", _query(), _ctx())
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


def test_vertical_run_through_node_services_matches_in_process(tmp_path: Path, short_dir: Path) -> None:
    scenario_path = write_subset(tmp_path / "data")
    scenario = config.load(scenario_path)
    ref = run_scenario_in_process(scenario, tmp_path / "ref")
    assert ref["status"] == "completed", ref

    out = tmp_path / "svc"
    sockets: dict[int, Path] = {}
    procs: list[subprocess.Popen] = []
    data_files = {str(tmp_path / "data" / "bank.csv"), str(tmp_path / "data" / "centre.csv")}
    try:
        for i, spec in enumerate(scenario.parties):
            cfg = tmp_path / f"{spec.name}.toml"
            sockets[1000 + i] = short_dir / spec.name / "node.sock"
            cfg.write_text(
                tomli_w.dumps(
                    {
                        "party": spec.name,
                        "role": spec.role,
                        "data": scenario.resolve(spec.data),
                        "node-dir": str(out / "nodes" / spec.name),
                        "scenario": str(scenario_path),
                        "socket": str(sockets[1000 + i]),
                    }
                )
            )
            procs.append(_serve(cfg, tmp_path / f"{spec.name}.log"))
        deadline = time.monotonic() + 60
        for s in sockets.values():
            while True:
                try:
                    ping(s)
                    break
                except lc.ChannelError:
                    assert time.monotonic() < deadline, "node service did not come up"
                    assert all(p.poll() is None for p in procs), [p.read_text() for p in tmp_path.glob("*.log")]
                    time.sleep(0.2)

        opened: list[str] = []

        def audit(event: str, args: tuple) -> None:
            if event == "open" and args and str(args[0]) in data_files:
                opened.append(str(args[0]))

        sys.addaudithook(audit)  # cannot be removed: it only records, and only the two CSV paths
        (tmp_path / "data" / "bank.csv").read_bytes()  # planted: the hook sees an open of a data file
        assert opened, "the audit hook does not see opens"
        opened.clear()

        def forwarder(message: Message, context: Context) -> Message:
            return forward(sockets[context.node_id], message, context)

        grid = InProcessGrid(forwarder, len(scenario.parties))
        status = coordinate(grid, server_context(), scenario, out)
        assert status["status"] == "completed", status
        assert opened == [], f"the forwarding side opened data files: {opened}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [p.read_text() for p in tmp_path.glob("*.log")]
    m_ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    m_svc = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "ks", "gini", "log_loss"):
        assert m_svc[key] == pytest.approx(m_ref[key], abs=1e-9), key
    assert all((out / "nodes" / s.name / "service" / "state" / "run-1.state").exists() for s in scenario.parties)
    assert (out / "nodes" / "bank" / "model.json").exists()
