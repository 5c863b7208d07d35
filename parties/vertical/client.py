"""Data-node side of relayed protocols: the ``init``/``step``/``finish`` handlers of every phase.

Every call restores this node's party for the phase from ``context.state`` (its adapter, from
:mod:`parties.vertical.registry`, rebuilds it from the node's own data), feeds it the inbox and
persists it again. Reading the request, the egress log and error replies are the shared node
handler's job (:mod:`parties.common.handlers`).
"""

from __future__ import annotations

from pathlib import Path

from flwr.clientapp import ClientApp

from parties.common import checkpoint, transport
from parties.common.exchange import PARAM, ExchangeClient, StreamInvite, stream_party
from parties.common.handlers import RelayRequest, ScenarioProvider, register_steps
from parties.common.node import NodeRuntime
from parties.common.transport import NodeReply
from parties.vertical.registry import phase_named
from protocols.common.party import Envelope, Party, RestartableParty

# phases of a training run a resumed coordinator can continue after (not release, not inference)
RESUMABLE = frozenset({"align", "consent", "split", "hetero_lr", "secureboost", "score"})


def _state_key(phase: str) -> str:
    return f"phase:{phase}"


def phase_step(node: NodeRuntime, request: RelayRequest) -> NodeReply:
    """One relay step of the request's phase on this node (init, step or finish)."""
    phase, kind = request.phase, request.kind
    adapter = phase_named(phase)
    if kind == transport.INIT and request.params.get("resume"):
        # a resumed run: the party comes back from the checkpoint the hello restored, and sends
        # again what it sent right after that checkpoint (parties.common.checkpoint)
        state = node.get_bytes(_state_key(phase))
        if state is None:
            raise RuntimeError(f"no checkpointed state for phase {phase!r} to resume from")
        party = adapter.restore(node, state)
        outbox = party.resume()
    elif kind == transport.INIT:
        party = adapter.create(node, request.params)
        outbox = party.start()
    else:
        state = node.get_bytes(_state_key(phase))
        if state is None:
            raise RuntimeError(f"no state for phase {phase!r}: step {request.step!r} arrived before init")
        party = adapter.restore(node, state)
        if kind == transport.STEP and PARAM in request.params:
            outbox = _stream(node, request, party)
        else:
            outbox = party.receive(request.inbox) if kind == transport.STEP else []
    if kind == transport.FINISH:
        summary = adapter.finish(node, party)
    elif party.finished:
        # Finish right away (persist results, report) instead of waiting for a separate
        # finish message: one Flower round trip less per phase (~6 s in deployment).
        summary = {**adapter.progress(node, party), transport.FINISHED: adapter.finish(node, party)}
    else:
        node.put(_state_key(phase), adapter.dump(party))
        summary = adapter.progress(node, party)
    label = _resume_label(phase, kind, party) if phase in RESUMABLE else None
    if label is not None:
        summary[checkpoint.REPORTED] = _checkpoint(node, label)
    return NodeReply(outbox, party.finished, summary)


def _stream(node: NodeRuntime, request: RelayRequest, party: Party) -> list[Envelope]:
    """A streamed step (:mod:`parties.common.exchange`): join the coordinator's hub first, then run
    the party exchange by exchange until a checkpoint boundary or its end. Every envelope is
    signed, verified and logged under its sub-step as a relayed one is; what the party posted last
    is delivered by the coordinator's next step, so this step's own reply carries none."""
    client = ExchangeClient(StreamInvite.from_params(request.params[PARAM]), node.name, ca_pem=node.stream_ca())
    at = [f"{request.step}.1"]  # the exchange this node is in

    def seal(sub: str, outbox: list[Envelope]) -> list[Envelope]:
        at[0] = sub
        node.fail_if_injected(sub)
        sealed = node.seal_outbox(request.phase, sub, outbox, request.announced)
        node.log_egress(sub, sealed, None)
        return sealed

    def accept(sub: str, inbox: list) -> list[Envelope]:
        at[0] = sub
        return node.accept_inbox(request.phase, sub, list(inbox), request.announced)

    def pause() -> bool:
        return isinstance(party, RestartableParty) and party.resume_point() is not None

    try:
        stream_party(client, request.step, party, request.inbox, seal=seal, accept=accept, pause=pause)
    except Exception as exc:
        # the node log says which exchange failed: it was served that one (an envelope the hub
        # withheld from it is then a drop, not a run that stopped first)
        node.log_failure(at[0], f"{type(exc).__name__}: {exc}")
        raise
    return []


def _resume_label(phase: str, kind: str, party: Party) -> str | None:
    """The checkpoint this step ends at: the phase's end, or a protocol's epoch/tree boundary."""
    if kind == transport.FINISH or party.finished:
        return f"after:{phase}"
    if isinstance(party, RestartableParty) and (done := party.resume_point()) is not None:
        return f"{phase}@{done}"
    return None


def _checkpoint(node: NodeRuntime, label: str) -> str:
    """Write this node's checkpoint ``label`` (a run without a run id, e.g. a sweep, keeps none)."""
    if node.get("run_id") is not None:
        checkpoint.save_node_checkpoint(node, label)
    return label


def register(app: ClientApp, scenario_of: ScenarioProvider, out_dir: Path | None) -> None:
    """Answer the relay's phase messages on ``app``."""
    register_steps(
        app, {kind: phase_step for kind in (transport.INIT, transport.STEP, transport.FINISH)}, scenario_of, out_dir
    )
