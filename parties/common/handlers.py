"""Node side of the relay: the one shape of a Flower query handler for a relayed step.

Every relayed query (``hello``, and a phase's ``init``/``step``/``finish``) is answered the same
way: find this node's party in the scenario, read the request, let the step function compute the
reply, sign what is about to leave the node into its own egress log, reply. Any exception becomes
a Flower error reply whose reason names this party, the step and the cause, so the coordinator
can stop the run with a clear message. Step functions only compute; they never see Flower.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from fedcredit.config import Scenario
from parties.common import exchange, transport
from parties.common.node import NodeRuntime
from parties.common.transport import NodeReply
from protocols.common.party import Envelope

log = logging.getLogger(__name__)
ERROR_CODE = 1001

ScenarioProvider = Callable[[Context], Scenario]


@dataclass
class RelayRequest:
    """One relayed request as a node receives it."""

    kind: str  # transport.HELLO, INIT, STEP or FINISH
    phase: str
    step: str
    params: dict
    inbox: list[Envelope]
    announced: dict = field(default_factory=dict)  # the session announcement (to sign and verify mid-step)


NodeStep = Callable[[NodeRuntime, RelayRequest], NodeReply]  # computes this node's reply


def answer(
    kind: str,
    step_fn: NodeStep,
    message: Message,
    context: Context,
    scenario_of: ScenarioProvider,
    out_dir: Path | None,
) -> Message:
    node_name, step = "?", "?"
    node: NodeRuntime | None = None
    params: dict = {}
    try:
        node = NodeRuntime(context, scenario_of(context), out_dir)
        node_name = node.name
        phase, step, params, signed_inbox = transport.read_request(message.content)
        params = params if isinstance(params, dict) else {}
        announced = transport.read_session(message.content)
        # authenticate before any party sees a byte: verified envelopes are logged as received
        inbox = node.accept_inbox(phase, step, list(signed_inbox), announced)
        heads = transport.read_tlog(message.content)
        if heads:  # a phase boundary: check and co-sign the coordinator's tree head before the step
            node.cosign(heads, step)
        node.fail_if_injected(step)
        reply = step_fn(node, RelayRequest(kind, phase, step, params, inbox, announced))
        outbox = node.seal_outbox(phase, step, reply.outbox, announced)
        summary_bytes = transport.canonical_json(reply.summary)
        node.log_egress(step, outbox, summary_bytes)
        return Message(transport.reply(outbox=outbox, finished=reply.finished, summary=reply.summary), reply_to=message)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the coordinator, named
        log.error("party %s failed at %s:\n%s", node_name, step, traceback.format_exc())
        if node is not None and step != "?":
            try:
                node.log_failure(step, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the error reply below matters more than this record
                log.exception("party %s could not log its failure", node_name)
        if node is not None and isinstance(params.get(exchange.PARAM), dict) and not getattr(exc, "reported", False):
            # a streamed step: peers already in the stream must not wait for this node
            exchange.ExchangeClient.report_failure(
                params[exchange.PARAM], node.name, f"{type(exc).__name__}: {exc}", ca_pem=_ca(node)
            )
        return Message(
            Error(code=ERROR_CODE, reason=f"party {node_name!r} at {step!r}: {type(exc).__name__}: {exc}"),
            reply_to=message,
        )


def _ca(node: NodeRuntime) -> bytes | None:
    try:
        return node.stream_ca()
    except OSError:
        return None


def answer_close(message: Message, context: Context, scenario_of: ScenarioProvider, out_dir: Path | None) -> Message:
    """The run's final tree head: co-sign it and end the node log (also when the head is refused,
    so the log is complete and says why)."""
    node_name = "?"
    try:
        node = NodeRuntime(context, scenario_of(context), out_dir)
        node_name = node.name
        if node.get("run_id") is None:  # never introduced in this run: nothing to close
            return Message(transport.reply(outbox=[], finished=True, summary={}), reply_to=message)
        try:
            node.session(transport.read_session(message.content))
            node.cosign(transport.read_tlog(message.content), "close")
        except Exception as exc:
            node.end_log(f"refused the final tree head: {type(exc).__name__}: {exc}")
            raise
        node.end_log("closed")
        return Message(transport.reply(outbox=[], finished=True, summary={}), reply_to=message)
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which logs it
        log.error("party %s could not close its log:\n%s", node_name, traceback.format_exc())
        return Message(
            Error(code=ERROR_CODE, reason=f"party {node_name!r} at 'close': {type(exc).__name__}: {exc}"),
            reply_to=message,
        )


def register_steps(
    app: ClientApp, steps: Mapping[str, NodeStep], scenario_of: ScenarioProvider, out_dir: Path | None
) -> None:
    """Answer each message kind in ``steps`` (e.g. ``transport.INIT``) with its step function."""
    for kind, step_fn in steps.items():
        action = kind.split(".", 1)[1]

        def handler(message: Message, context: Context, _kind: str = kind, _fn: NodeStep = step_fn) -> Message:
            return answer(_kind, _fn, message, context, scenario_of, out_dir)

        app.query(action)(handler)
