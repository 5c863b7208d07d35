"""Node introduction, both sides: the first exchange of every run that keeps a ledger.

The coordinator asks every connected node who it is (``hello``); each node answers with its
party, role, egress public key and table size, and remembers the run id for its egress log. The
coordinator maps Flower node ids to the scenario's parties, writes the ledger's ``run_start``
record and checks every party is there with the role the scenario gives it. Vertical runs,
joint inference and horizontal runs with a ledger all start this way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from fedcredit.config import Scenario
from fedcredit.ledger import public_key_hex
from parties.common import transport
from parties.common.handlers import RelayRequest, ScenarioProvider, answer_close, register_steps
from parties.common.node import NodeRuntime
from parties.common.recorder import LedgerRecorder
from parties.common.relay import Relay, RunFailed, wait_for_nodes
from parties.common.transport import NodeReply

# -- coordinator side ----------------------------------------------------------------------


def introduce(
    grid: Grid,
    recorder: LedgerRecorder,
    scenario: Scenario,
    timeout: float,
    *,
    resume: tuple[int, str] | None = None,
) -> tuple[Relay, dict]:
    """Map Flower node ids to scenario parties and write the ledger's run_start record.

    ``resume=(segment, label)`` introduces the nodes of a resumed run instead: each restores its
    checkpoint ``label`` (:mod:`parties.common.checkpoint`) and answers with a fresh nonce, so the
    segment runs under a new session; its steps are named ``r<segment>:...`` and the recorder
    writes ``run_resumed`` instead of ``run_start``.

    Returns the relay over the introduced nodes and each party's introduction summary.
    """
    node_ids = wait_for_nodes(grid, len(scenario.parties), timeout)
    hello: dict = {"run_id": recorder.run_id, "scenario_hash": scenario.config_hash}
    prefix = ""
    if resume is not None:
        prefix = f"r{resume[0]}:"
        hello["restore"] = resume[1]
    msgs = [
        Message(
            transport.request(phase="hello", step=f"{prefix}hello", params=hello),
            dst_node_id=nid,
            message_type=transport.HELLO,
            group_id="hello",
        )
        for nid in node_ids
    ]
    nodes: dict[str, int] = {}
    parties: dict[str, dict] = {}
    for rep in grid.send_and_receive(msgs, timeout=timeout):
        nid = rep.metadata.src_node_id
        if rep.has_error():
            raise RunFailed(f"node-{nid}", "hello", rep.error.reason or "error")
        _, _, summary, _ = transport.read_reply(rep.content)
        name = summary["party"]
        if name in nodes:
            raise RunFailed(name, "hello", f"two nodes claim to be {name!r}")
        nodes[name] = nid
        parties[name] = summary
    # Every node's fresh nonce goes into the session its envelopes are signed for; the coordinator
    # only relays them (a node refuses a session that lacks its own nonce).
    session = {"run_id": recorder.run_id, "nonces": {name: str(s.get("nonce", "")) for name, s in parties.items()}}
    relay = Relay(grid, nodes, recorder, timeout=timeout, session=session)
    relay.prefix = prefix
    if isinstance(recorder, LedgerRecorder):
        recorder.on_close = relay.close_log  # every party co-signs the final head, also of a failed run
        for name, s in parties.items():  # a resumed segment: prove consistency from the head each node holds
            held = int(s.get("tree_head_size") or 0)
            if 0 < held <= len(recorder.heads.records):
                recorder.heads.held[name] = held
    recorder.run_start(
        {
            name: {"role": s["role"], "egress_pubkey": s["egress_pubkey"], "rows": s["rows"], "features": s["features"]}
            for name, s in parties.items()
        }
    )
    # the hello answers crossed a boundary too: record them like any step
    answers = ((name, transport.canonical_json(summary)) for name, summary in parties.items())
    recorder.step(
        f"{prefix}hello",
        0,
        [
            {
                "sender": name,
                "recipient": "coordinator",
                "kind": "Summary",
                "size": len(b),
                "sha256": hashlib.sha256(b).hexdigest(),
            }
            for name, b in answers
        ],
    )
    for name, s in parties.items():
        if "restore_error" in s:  # its checkpoint is missing, foreign or edited (names the file)
            raise RunFailed(name, "hello", str(s["restore_error"]))
        if "error" in s:
            raise RunFailed(name, "hello", f"cannot load its data: {s['error']}")
        expected_role = scenario.party(name).role
        if s["role"] != expected_role:
            raise RunFailed(name, "hello", f"reports role {s['role']!r}, scenario says {expected_role!r}")
    missing = [p.name for p in scenario.parties if p.name not in nodes]
    if missing:
        raise RunFailed(missing[0], "hello", "party did not answer")
    return relay, parties


# -- node side -------------------------------------------------------------------------------


def hello(node: NodeRuntime, request: RelayRequest) -> NodeReply:
    """Who this node is; a node with bad data still introduces itself, so the run is recorded
    and the failure named."""
    node.put("run_id", str(request.params["run_id"]))
    refused = None
    if "restore" in request.params:  # a resumed run: protocol state back from this node's own checkpoint
        from parties.common.checkpoint import CheckpointError, restore_node_checkpoint

        try:
            restore_node_checkpoint(node, str(request.params["run_id"]), str(request.params["restore"]))
        except CheckpointError as exc:  # answered, not raised: the ledger records every hello answer
            refused = f"{type(exc).__name__}: {exc}"
    summary: dict = {
        "party": node.name,
        "role": node.role,
        "egress_pubkey": public_key_hex(node.signing_key()),
        "nonce": node.hello_nonce(),
    }
    if refused is not None:
        summary["restore_error"] = refused
    elif "restore" in request.params:  # said in the answer whose hash the ledger and the node's log keep
        summary["restored"] = str(request.params["restore"])
    held = node.last_head()
    if held is not None:  # the last tree head this node co-signed (a resumed run continues from it)
        summary["tree_head_size"] = held[0].size
    try:
        data = node.data()
        summary.update(rows=len(data), features=data.n_features)
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which stops the run
        summary.update(rows=0, features=0, error=f"{type(exc).__name__}: {exc}")
    return NodeReply([], True, summary)


def register_hello(app: ClientApp, scenario_of: ScenarioProvider, out_dir: Path | None) -> None:
    """Let the nodes of ``app`` introduce themselves."""
    register_steps(app, {transport.HELLO: hello}, scenario_of, out_dir)

    @app.query("fc_close")
    def close(message: Message, context: Context) -> Message:
        return answer_close(message, context, scenario_of, out_dir)
