"""The deployed ClientApp's one job: hand each message to the party's node service, return its reply.

The SuperNode's ``--node-config`` then holds only ``node-socket`` (where the operator's
``fedcredit node serve`` listens): no data path, no key path. Whatever runs in the
``flwr-clientapp`` process -- this forwarder or code a tampered bundle smuggled in -- has
nothing to open; the node service runs only the code its operator installed, and answers a
forwarded message exactly as it would answer one from this forwarder.

This module imports only Flower and the channel, so the per-message ``flwr-clientapp`` process
starts fast.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.supercore.task_identity import TaskIdentity

from parties.common import local_channel as lc
from parties.common.node_service import PROTOCOL

log = logging.getLogger(__name__)
SOCKET_KEY = "node-socket"  # the SuperNode's node_config key naming the node service's socket
WAIT_KEY = "node-wait"  # seconds to wait for a node service that is (re)starting; default below
DEFAULT_WAIT = 60.0
FORWARD_ERROR = 1002  # Flower error code of a reply the forwarder could not get


def socket_of(context: Context) -> Path | None:
    value = context.node_config.get(SOCKET_KEY)
    return Path(str(value)) if value else None


def forward(
    path: Path, message: Message, context: Context, timeout: float | None = None, wait: float | None = None
) -> Message:
    """The node service's reply to ``message``; an error reply naming the socket if there is none.

    While nothing listens on the socket (the operator is restarting the service) the message
    has not been delivered, so it is offered again for up to ``wait`` seconds (node config
    ``node-wait``, default 60): a restarted service continues from its persisted state. A
    connection that breaks *after* delivery is not retried -- the step may have run.
    """
    if wait is None:
        wait = float(context.node_config.get(WAIT_KEY, DEFAULT_WAIT))
    try:
        task_id = TaskIdentity.task_id
    except RuntimeError:
        task_id = 0
    header = {
        "protocol": PROTOCOL,
        "op": "message",
        "run_config": dict(context.run_config),
        "task_id": task_id,
    }
    deadline = time.monotonic() + wait
    try:
        frame = lc.message_to_frame(header, message)
        while True:
            try:
                got = lc.call(path, frame, timeout=timeout)
                break
            except lc.ServiceDown:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        if not got.header.get("ok"):
            raise lc.ChannelError(f"the node service refused the message: {got.header.get('error')}")
        reply = lc.frame_to_message(got)
    except (lc.ChannelError, OSError) as exc:
        log.error("forwarding %s to %s failed: %s", message.metadata.message_type, path, exc)
        return Message(Error(code=FORWARD_ERROR, reason=f"node service at {path}: {exc}"), reply_to=message)
    if reply.metadata.reply_to_message_id != message.metadata.message_id:
        return Message(
            Error(code=FORWARD_ERROR, reason=f"node service at {path} answered another message"), reply_to=message
        )
    return reply


def ping(path: Path, timeout: float = 2.0) -> dict:
    """The service's ``ping`` answer (party, pid); raises :class:`ChannelError` if it does not answer."""
    got = lc.call(path, lc.Frame({"protocol": PROTOCOL, "op": "ping"}, []), timeout=timeout)
    if not got.header.get("ok"):
        raise lc.ChannelError(str(got.header.get("error")))
    return got.header
