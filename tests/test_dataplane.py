"""The streaming data plane (parties.common.dataplane), without Flower processes.

* the stream: after one Flower invitation, messages go down the node service's outgoing TLS
  stream and are answered by the same handler and persisted Context as forwarded ones; a node
  service without a data-plane CA declines and stays on Flower;
* authentication: a node signing with a key that is not its provisioned one, a token it was not
  given (or already spent), a token of another run, a server certificate of another CA -- each
  is refused, and the server logs the refusal;
* failure: the stream breaking mid-call gives an error reply naming the party at once (no wait
  for the step timeout), and the party's later messages fall back to Flower;
* tampering: a coordinator that alters an envelope on the stream is caught by the recipient's
  envelope check, exactly as over Flower; an honest vertical run over the data plane gives the
  model of the in-process run, with only the invitation over Flower, and its ledger verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedcredit import config
from fedcredit.deploy.keys import FederationKeys, ensure_keys, init_keys
from fedcredit.ledger import VerificationReport, load_private_key, load_public_key, verify
from parties.common import dataplane as dp
from parties.common import local_channel as lc
from parties.common import peers, transport
from parties.common.forwarder import forward, ping
from parties.common.grid import InProcessGrid, server_context
from parties.common.node_service import NodeService
from parties.in_process import run_scenario_in_process
from parties.server_app import coordinate
from tests.deploy_support import write_subset

pytestmark = pytest.mark.timeout(600)
PARTIES = ["bank", "credit_centre"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="fcdp-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> FederationKeys:
    """A federation CA, the coordinator's CA-signed certificate and each party's node key."""
    return ensure_keys(tmp_path_factory.mktemp("keys") / "keys", PARTIES)


def _counter_app() -> ClientApp:
    app = ClientApp()

    @app.query("count")
    def count(message: Message, context: Context) -> Message:
        rec = context.state.config_records.setdefault("c", ConfigRecord({"n": 0}))
        rec["n"] = int(rec["n"]) + 1
        if message.content.config_records["q"].get("hang"):
            time.sleep(float(message.content.config_records["q"]["hang"]))  # type: ignore[arg-type]
        return Message(
            RecordDict({"r": ConfigRecord({"n": rec["n"], "party": context.node_config["party"]})}), reply_to=message
        )

    return app


def _service(fed: FederationKeys, party: str, d: Path, *, ca: bool = True) -> NodeService:
    svc = NodeService(
        _counter_app(),
        {"party": party, "egress-key": str(fed.party(party).egress_key)},
        d / party / "node.sock",
        d / f"{party}-state",
        dataplane_ca=fed.ca_cert if ca else None,
    )
    svc.bind()
    threading.Thread(target=svc.serve_forever, daemon=True).start()
    return svc


def _server(fed: FederationKeys, run_id: int = 1) -> dp.DataPlaneServer:
    keys = {p: load_public_key(fed.party(p).egress_pub) for p in PARTIES}
    return dp.DataPlaneServer(keys, fed.server_cert.read_bytes(), fed.server_key.read_bytes(), run_id)


def _flower(services: dict[int, NodeService]) -> tuple[InProcessGrid, list[int]]:
    """Flower's path, emulated: each node's ClientApp forwards to its service's socket."""
    flower_calls: list[int] = []

    def forwarder(message: Message, context: Context) -> Message:
        flower_calls.append(context.node_id)
        return forward(services[context.node_id].socket_path, message, context, wait=1.0)

    return InProcessGrid(forwarder, len(services)), flower_calls


def _query(node: int, hang: float = 0.0) -> Message:
    return Message(
        RecordDict({"q": ConfigRecord({"hang": hang})}), dst_node_id=node, message_type="query.count", group_id="p/1"
    )


def _counts(replies: list[Message]) -> dict[str, int]:
    return {str(r.content.config_records["r"]["party"]): int(r.content.config_records["r"]["n"]) for r in replies}  # type: ignore[call-overload]


def test_messages_go_over_the_stream_after_one_flower_invitation(fed: FederationKeys, short_dir: Path) -> None:
    server_context()
    services = {1000: _service(fed, "bank", short_dir), 1001: _service(fed, "credit_centre", short_dir, ca=False)}
    server = _server(fed)
    inner, flower_calls = _flower(services)
    grid = dp.DataPlaneGrid(inner, server, {1000: "bank", 1001: "credit_centre"})
    try:
        for i in range(1, 4):
            replies = list(grid.send_and_receive([_query(1000), _query(1001)], timeout=30))
            assert _counts(replies) == {"bank": i, "credit_centre": i}  # one Context per node, either path
        # the bank dialled in; the centre's service has no data-plane CA, declined, stays on Flower
        assert server.link("bank") is not None and server.link("credit_centre") is None
        assert "no data-plane CA" in grid.declined["credit_centre"]
        # the invitations rode along the first call over Flower; then the bank's queries took the stream
        assert flower_calls.count(1000) == 2  # invitation + first query
        assert flower_calls.count(1001) == 4  # the centre: invitation + three queries
        assert services[1000]._dataplane is not None and services[1000]._dataplane.answered == 2
        stats = grid.stats()
        assert stats["by_phase"]["p"] == {
            "flower_round_trips": 3,
            "dataplane_round_trips": 0,
            "flower_seconds_per_round_trip": pytest.approx(stats["by_phase"]["p"]["flower_seconds_per_round_trip"]),
        }
        # only the bank now: the call is a data-plane round trip, not a Flower one
        grid.send_and_receive([_query(1000)], timeout=30)
        assert grid.stats()["by_phase"]["p"]["dataplane_round_trips"] == 1 and flower_calls.count(1000) == 2
        assert server.refusals == []
        # an invitation sent down a stream (to make the node dial elsewhere) is refused by the node
        sneaky = Message(server.invite("bank").to_record(), dst_node_id=1000, message_type=dp.INVITE, group_id="p/2")
        (rep,) = list(grid.send_and_receive([sneaky], timeout=30))
        assert rep.has_error() and "no invitations over the data plane" in rep.error.reason
        assert server.link("bank") is not None  # and keeps its stream
    finally:
        server.stop()
        for s in services.values():
            s.stop()


def _dial(fed: FederationKeys, inv: dp.Invitation, party: str, key: Ed25519PrivateKey, ca: Path | None = None) -> None:
    client = dp.DataPlaneClient(inv, (ca or fed.ca_cert).read_bytes(), key, party, lambda f: f)
    try:
        client.connect(timeout=5)
    finally:
        client.close()


def test_wrong_key_token_run_or_ca_is_refused_and_logged(fed: FederationKeys, tmp_path: Path) -> None:
    server, other = _server(fed, run_id=1), _server(fed, run_id=2)
    bank_key = load_private_key(fed.party("bank").egress_key)
    try:
        # planted: a node that signs with a key other than its provisioned one
        with pytest.raises(dp.DataPlaneError, match="refused this node: signature does not verify"):
            _dial(fed, server.invite("bank"), "bank", Ed25519PrivateKey.generate())
        # the centre's key cannot use the bank's invitation
        centre_key = load_private_key(fed.party("credit_centre").egress_key)
        with pytest.raises(dp.DataPlaneError, match="the token was issued to 'bank'"):
            _dial(fed, server.invite("bank"), "credit_centre", centre_key)
        # a token nobody was given
        forged = dp.Invitation(server.address, 1, server.session, "00" * 32, "bank")
        with pytest.raises(dp.DataPlaneError, match="unknown or already used token"):
            _dial(fed, forged, "bank", bank_key)
        # a token of another run (another coordinator server), presented here
        inv2 = other.invite("bank")
        stolen = dp.Invitation(server.address, inv2.run_id, inv2.session, inv2.token, "bank")
        with pytest.raises(dp.DataPlaneError, match="not this run"):
            _dial(fed, stolen, "bank", bank_key)
        stolen_same_run = dp.Invitation(server.address, 1, server.session, inv2.token, "bank")
        with pytest.raises(dp.DataPlaneError, match="unknown or already used token"):
            _dial(fed, stolen_same_run, "bank", bank_key)
        # the honest node gets in once; the same token again is refused (one use)
        inv = server.invite("bank")
        _dial(fed, inv, "bank", bank_key)
        with pytest.raises(dp.DataPlaneError, match="unknown or already used token"):
            _dial(fed, inv, "bank", bank_key)
        # a node whose operator trusts another CA does not talk to this server at all
        stranger = init_keys(tmp_path / "other-fed", PARTIES)
        with pytest.raises(dp.DataPlaneError, match="not signed by this node's federation CA"):
            _dial(fed, server.invite("bank"), "bank", bank_key, ca=stranger.ca_cert)
        assert len(server.refusals) == 6, server.refusals
        assert all("refused a data-plane connection claiming to be" in r for r in server.refusals)
    finally:
        server.stop()
        other.stop()


def test_stream_breaking_mid_call_names_the_party_then_flower_takes_over(fed: FederationKeys, short_dir: Path) -> None:
    server_context()
    services = {1000: _service(fed, "bank", short_dir), 1001: _service(fed, "credit_centre", short_dir)}
    server = _server(fed)
    inner, flower_calls = _flower(services)
    grid = dp.DataPlaneGrid(inner, server, {1000: "bank", 1001: "credit_centre"})
    try:
        grid.send_and_receive([_query(1000), _query(1001)], timeout=30)
        assert server.link("bank") is not None and server.link("credit_centre") is not None
        bank_stream = services[1000]._dataplane
        assert bank_stream is not None
        # planted: the bank's stream drops while it works on a message
        threading.Timer(0.5, bank_stream.close).start()
        t = time.monotonic()
        replies = list(grid.send_and_receive([_query(1000, hang=2.0), _query(1001)], timeout=120))
        assert time.monotonic() - t < 30, "waited for the step timeout instead of noticing the broken stream"
        bank = [r for r in replies if r.metadata.src_node_id == 1000]
        assert len(bank) == 1 and bank[0].has_error()
        assert "party 'bank' over the data plane" in bank[0].error.reason
        assert "bank" in bank[0].error.reason and ("broke" in bank[0].error.reason or "closed" in bank[0].error.reason)
        assert _counts([r for r in replies if r.metadata.src_node_id == 1001]) == {"credit_centre": 2}
        # the bank's next message goes over Flower (its service went on; the step above did run)
        before = flower_calls.count(1000)
        assert _counts(list(grid.send_and_receive([_query(1000)], timeout=30))) == {"bank": 3}
        assert flower_calls.count(1000) == before + 1
    finally:
        server.stop()
        for s in services.values():
            s.stop()


# -- whole vertical runs through `fedcredit node serve` processes --------------------------------
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


def _tamper_first_inbox(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Plant a coordinator that flips one byte of the first envelope it sends down a stream."""
    done: list[str] = []
    send = dp._Link.send

    def altered(self: dp._Link, message_id: str, raw: bytes) -> object:
        frame = dp.decode_frame(raw)
        msg = lc.frame_to_message(frame)
        if not done and msg.metadata.message_type == transport.STEP:
            rec = msg.content.config_records[transport.RECORD]
            from protocols.common import wire

            batch = wire.decode(rec["inbox"], transport.RelayBatch)  # type: ignore[arg-type]
            if batch.payloads:
                p = bytearray(batch.payloads[0])
                p[len(p) // 2] ^= 1
                batch.payloads[0] = bytes(p)
                rec["inbox"] = wire.encode(batch)
                done.append(f"{batch.senders[0]}->{batch.recipients[0]} {msg.metadata.group_id}")
                msg.metadata.__dict__["_message_id"] = message_id
                frame = lc.message_to_frame(
                    {k: v for k, v in frame.header.items() if k not in ("root", "objects")}, msg
                )
                frame.header["message_id"] = message_id
                raw = dp.encode_frame(frame)
        return send(self, message_id, raw)

    monkeypatch.setattr(dp._Link, "send", altered)
    return done


def _run_over_dataplane(tmp_path: Path, short_dir: Path, fed: FederationKeys) -> tuple[dict, Path, list[str], dict]:
    scenario_path = tmp_path / "data" / "scenario.toml"
    scenario = config.load(scenario_path)
    out = tmp_path / "svc"
    keys = peers.provision(scenario, out)
    names = [s.name for s in scenario.parties]
    sockets = {1000 + i: short_dir / n / "node.sock" for i, n in enumerate(names)}
    procs = []
    try:
        for i, spec in enumerate(scenario.parties):
            cfg = tmp_path / f"{spec.name}.toml"
            cfg.write_text(
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
                        "dataplane-ca": str(fed.ca_cert),
                    }
                )
            )
            procs.append(_serve(cfg, tmp_path / f"{spec.name}.log"))
        deadline = time.monotonic() + 90
        for s in sockets.values():
            while True:
                try:
                    ping(s)
                    break
                except lc.ChannelError:
                    assert time.monotonic() < deadline, [p.read_text() for p in tmp_path.glob("*.log")]
                    time.sleep(0.2)
        flower_calls: list[str] = []

        def forwarder(message: Message, context: Context) -> Message:
            flower_calls.append(message.metadata.message_type)
            return forward(sockets[context.node_id], message, context, wait=2.0)

        node_keys = {n: load_public_key(keys / n / peers.KEY_FILE) for n in names}
        server = dp.DataPlaneServer(node_keys, fed.server_cert.read_bytes(), fed.server_key.read_bytes(), 1)
        grid = dp.DataPlaneGrid(
            InProcessGrid(forwarder, len(names)), server, {1000 + i: n for i, n in enumerate(names)}
        )
        try:
            status = coordinate(grid, server_context(), scenario, out)
        finally:
            server.stop()
        stats = grid.stats()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return status, out, flower_calls, stats


def _verify(out: Path) -> VerificationReport:
    egress = sorted((out / "nodes").glob("*/egress.sqlite"))
    assert len(egress) == 2
    return verify(out / "ledger.sqlite", egress=egress)


def test_envelope_altered_on_the_stream_is_refused_by_its_recipient(
    tmp_path: Path, short_dir: Path, fed: FederationKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_subset(tmp_path / "data")
    done = _tamper_first_inbox(monkeypatch)
    status, out, _, _ = _run_over_dataplane(tmp_path, short_dir, fed)
    assert done, "the tamper was never planted"
    assert status["status"] == "failed", status
    recipient = done[0].split("->")[1].split(" ")[0]
    assert status["party"] == recipient, (status, done)
    assert "signature does not verify" in status["error"], status
    # the stopped run's ledger is closed (run_end), and checked against the egress logs its only
    # error is the recipient's signed refusal of the altered envelope: the tamper is on record
    report = _verify(out)
    assert report.complete and not report.ok
    assert report.errors and all(recipient in e and "does not verify" in e for e in report.errors), report.errors


def test_vertical_run_over_the_data_plane_matches_in_process(
    tmp_path: Path, short_dir: Path, fed: FederationKeys
) -> None:
    scenario_path = write_subset(tmp_path / "data")
    ref = tmp_path / "ref"
    run_scenario_in_process(config.load(scenario_path), ref)
    status, out, flower_calls, stats = _run_over_dataplane(tmp_path, short_dir, fed)
    assert status["status"] == "completed", status
    m_ref = json.loads((ref / "metrics.json").read_text())
    m = json.loads((out / "metrics.json").read_text())
    for key in ("auc", "ks", "gini", "log_loss"):
        assert m[key] == pytest.approx(m_ref[key], abs=1e-9), key
    # Flower carried the control plane only (invitation, introduction, each phase's start, the
    # final head); every relay step inside a phase went down the streams
    assert set(flower_calls) <= dp.CONTROL_TYPES | {dp.INVITE}, set(flower_calls)
    assert flower_calls.count(dp.INVITE) == 2 and transport.STEP not in flower_calls
    phases = {h for h in m["transport"]["by_phase"]}
    assert stats["flower_round_trips"] == len(phases) + 1  # hello and one init per phase, then close
    # every relay step travelled once, on one of the two paths (+ hello and close on Flower); the
    # count is the run's own: a centre seeing demo tokens for the first time asks for two more
    # consent steps than one that filed them already, so it may differ from the reference run's
    assert stats["dataplane_round_trips"] + stats["flower_round_trips"] == m["relay_steps"] + 2  # + hello, close
    assert m["transport"]["streams"] == ["bank", "credit_centre"] and stats["refusals"] == []
    assert abs(m["relay_steps"] - m_ref["flower_round_trips"]) in (0, 2)
    report = _verify(out)
    assert report.ok, report.errors


# -- the real deployment (`fedcredit deploy local`: SuperLink, SuperNodes, node services) ---------
@pytest.mark.deployment
@pytest.mark.timeout(1200)
def test_deployed_steps_do_not_grow_with_batches(tmp_path: Path) -> None:
    from fedcredit.deploy.local import DeployOptions, deploy_local

    scenario = write_subset(tmp_path / "data")
    text = scenario.read_text()
    runs = {}
    for batch in (8192, 1024):  # 4,000 rows: one mini-batch per epoch, then four
        sc = tmp_path / f"batch-{batch}.toml"
        sc.write_text(text.replace("batch_size = 8192", f"batch_size = {batch}"))
        summary = deploy_local(DeployOptions(scenario=sc, out=tmp_path / f"run-{batch}", startup_timeout=180))
        assert summary["status"]["status"] == "completed", summary["status"]
        assert summary["left_running"] == []
        v = summary["verification"]
        assert v["ok"], v["errors"]
        assert sorted(Path(p).parent.name for p in v["egress_logs"]) == ["bank", "credit_centre"]
        assert all(m.split("/")[0] == m.split("/")[1] != "0" for m in v["egress_matched"].values()), v
        runs[batch] = json.loads((tmp_path / f"run-{batch}" / "metrics.json").read_text())
    small, large = runs[8192], runs[1024]
    # more mini-batches: more exchanges (each recorded in the ledger), streamed inside the same
    # training steps (one per epoch, on the data plane) and the same Flower round trips
    assert large["streamed_exchanges"] > small["streamed_exchanges"] > 0
    assert large["streamed_steps"] == small["streamed_steps"] > 0
    lr_steps = [r["transport"]["by_phase"]["hetero_lr"]["dataplane_round_trips"] for r in (small, large)]
    assert lr_steps[0] == lr_steps[1], lr_steps
    flower = [r["transport"]["flower_round_trips"] for r in (small, large)]
    assert flower[0] == flower[1] <= 10, flower  # hello + one init per phase
    assert large["transport"]["streams"] == ["bank", "credit_centre"] and large["transport"]["refusals"] == []
    hl = large["deployment"]["transport"]["by_phase"]["hetero_lr"]  # its init over Flower, its steps not
    assert hl["flower_round_trips"] == 1 and hl["dataplane_round_trips"] > 0
    assert hl["dataplane_seconds_per_round_trip"] > 0
