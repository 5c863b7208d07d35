"""The one in-process Flower ``Grid``: the real coordinator logic and ClientApp handlers, no Ray.

Flower's simulation engine starts Ray (~15 s) and runs nodes in actor processes: right for the
main job, but slow for the many tests of failure handling, and opaque to a test that wants to see
every byte a node sends. This grid calls the ClientApp directly, with one persistent ``Context``
per virtual node (partition ``i`` is node ``1000 + i``), as a SuperNode would, and stays faithful
where it matters:

* every message and every reply crosses as the deflated object tree Flower's transport ships, so
  neither side can hold on to the other's objects and content ids are those of a real run;
* a ClientApp that raises becomes an error reply and its node's state is rolled back, as
  Flower's runtime does;
* ``tap(node_id, request, reply)`` sees every exchange (privacy tests capture what leaves a node);
* nodes in ``down`` have stopped answering: their messages get no reply (failure tests).

Recording wrappers (:class:`parties.horizontal.audit.RecordingGrid`) go on top of any grid.
Building the apps of a scenario and running them here is the entry-point layer's job
(:mod:`parties.in_process`, :mod:`parties.sweeps`): this module knows no app.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from parties.common.transport import STEP

ClientHandler = Callable[[Message, Context], Message]  # a ClientApp, or any callable that answers like one
Tap = Callable[[int, Message, Message], None]  # (node id, request as the node got it, reply as sent)
FIRST_NODE_ID = 1000


def wire_copy(msg: Message) -> Message:
    """Deflate a Message into Flower's object contents and inflate a new one from them."""
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(msg).items()}
    copied = inflate_object_from_contents(msg.object_id, contents)
    assert isinstance(copied, Message)
    return copied


def server_context(run_id: int = 1) -> Context:
    """The coordinator's Context for an in-process run.

    Flower stamps messages with the identity of the running task; the SuperLink or the
    simulation runtime normally sets it before the ServerApp starts.
    """
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, 0
    return Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config={})


class InProcessGrid(Grid):
    """``n_nodes`` virtual nodes answering through ``client_app`` in this process."""

    def __init__(self, client_app: ClientHandler, n_nodes: int, *, tap: Tap | None = None, run_id: int = 1) -> None:
        self.client_app = client_app
        self.tap = tap
        self.down: set[int] = set()  # nodes that stopped answering
        self.wire_seconds = 0.0  # time spent (de)serialising, i.e. emulating the transport
        self._run = Run.create_empty(run_id)
        self._outbox: dict[str, Message] = {}
        self._pushed = 0
        self._lock = threading.Lock()
        self.contexts = {
            FIRST_NODE_ID + i: Context(
                run_id=run_id,
                node_id=FIRST_NODE_ID + i,
                node_config={"partition-id": i, "num-partitions": n_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(n_nodes)
        }

    # -- Grid interface ---------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            mid = f"in-process-{self._pushed}"
            self._pushed += 1
            self._outbox[mid] = self._ship(msg)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Replies in message order. The nodes of a relayed protocol step answer at once, as real
        nodes do (a streamed step, :mod:`parties.common.exchange`, needs its parties running
        together); every other batch is delivered one message after the other, each reply seen
        by ``tap`` before the next message is delivered (tests rely on that order)."""
        inbound = [m for m in (self._outbox.pop(mid, None) for mid in message_ids) if m is not None]
        if len(inbound) > 1 and all(m.metadata.message_type == STEP for m in inbound):
            with ThreadPoolExecutor(max_workers=len(inbound), thread_name_prefix="in-process-node") as pool:
                answered = list(pool.map(self._deliver, inbound))
            return [r for m, r in zip(inbound, answered) if r is not None and self._tapped(m, r)]
        replies = []
        for msg in inbound:
            reply = self._deliver(msg)
            if reply is not None and self._tapped(msg, reply):
                replies.append(reply)
        return replies

    def _tapped(self, msg: Message, reply: Message) -> bool:
        if self.tap is not None:
            self.tap(msg.metadata.dst_node_id, msg, reply)
        return True

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))

    # -- delivery ---------------------------------------------------------------------
    def _ship(self, msg: Message) -> Message:
        t = time.perf_counter()
        try:
            return wire_copy(msg)
        finally:
            with self._lock:
                self.wire_seconds += time.perf_counter() - t

    def _deliver(self, inbound: Message) -> Message | None:
        """The node's reply as the coordinator receives it (shipped); None if the node is down."""
        node_id = inbound.metadata.dst_node_id
        if node_id in self.down:
            return None
        ctx = self.contexts[node_id]
        saved = copy.deepcopy(ctx.state)
        try:
            reply = self.client_app(inbound, ctx)
        except Exception as exc:  # noqa: BLE001 - Flower's runtime turns this into an error reply too
            ctx.state = saved
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(exc)}:<'{exc}'>"), reply_to=inbound
            )
        return self._ship(reply)
