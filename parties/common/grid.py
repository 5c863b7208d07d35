"""An in-process Flower ``Grid``: the real ServerApp and ClientApp, no Ray, no network.

Flower's simulation engine starts Ray (~15 s) and runs nodes in actor processes, which is right
for the main job but slow for tests that check failure handling, and opaque to a test that wants
to see every byte a node sends. This grid calls the ClientApp directly with one persistent
``Context`` per virtual node, exactly as a SuperNode would, and can hand every reply to a
``tap`` so privacy tests capture what leaves each node. Messages still go through Flower's own
``Message``/``RecordDict`` types, so handlers cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid


class LocalGrid(Grid):
    def __init__(
        self,
        client_app: ClientApp,
        node_configs: list[dict],
        *,
        tap: Callable[[int, Message, Message], None] | None = None,
        run_config: dict | None = None,
        run_id: int = 1,
    ):
        self.client_app = client_app
        self.tap = tap
        self._run_id = run_id
        self.contexts = {
            1000 + i: Context(
                run_id=run_id,
                node_id=1000 + i,
                node_config=dict(cfg),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for i, cfg in enumerate(node_configs)
        }
        self.down: set[int] = set()  # nodes that stopped answering (for failure tests)
        self._outbox: dict[str, Message] = {}

    # -- Grid interface ---------------------------------------------------------------
    def set_run(self, run_id: int) -> None:
        self._run_id = run_id

    @property
    def run(self):  # type: ignore[override]
        raise NotImplementedError("LocalGrid has no Run object")

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for i, msg in enumerate(messages):
            mid = f"local-{len(self._outbox)}-{i}"
            self._outbox[mid] = msg
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = []
        for mid in message_ids:
            msg = self._outbox.pop(mid, None)
            if msg is None:
                continue
            dst = msg.metadata.dst_node_id
            if dst in self.down:
                continue
            reply = self.client_app(msg, self.contexts[dst])
            if self.tap is not None:
                self.tap(dst, msg, reply)
            replies.append(reply)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))


def run_in_process(
    scenario,
    out_dir,
    *,
    tap: Callable[[int, Message, Message], None] | None = None,
    down: Callable[[LocalGrid], None] | None = None,
) -> dict:
    """Run a scenario with the real apps on a :class:`LocalGrid`; returns the coordinator's status."""
    from pathlib import Path

    from parties.client_app import build_client_app
    from parties.server_app import coordinate

    out = Path(out_dir)
    client = build_client_app(scenario, out)
    grid = LocalGrid(
        client,
        [{"partition-id": i, "num-partitions": len(scenario.parties)} for i in range(len(scenario.parties))],
        tap=tap,
    )
    if down is not None:
        down(grid)
    from flwr.supercore.task_identity import TaskIdentity

    # Flower stamps messages with the identity of the running task; the SuperLink or the
    # simulation runtime normally sets it before the ServerApp starts.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    return coordinate(grid, ctx, scenario, out)
