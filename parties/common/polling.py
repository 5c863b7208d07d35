"""The coordinator's wait for replies, without Flower's fixed 3 s sleep.

``Grid.send_and_receive`` of Flower's deployment grid pushes the messages, then pulls and sleeps
3 s between pulls until every reply is in (``flwr/superlink/grid/http_grid.py``; no setting in
Flower 1.42). A protocol step whose replies arrive after 0.4 s then still waits 3 s. This
wrapper implements the same contract on the grid's public ``push_messages`` / ``pull_messages``
with a short, growing pause (``first`` s, doubled up to ``cap`` s), so the coordinator notices a
reply within a fraction of a second while an idle wait costs a few requests per second at most.
Everything else is delegated unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run


class PromptGrid(Grid):
    """``inner`` with a ``send_and_receive`` that polls for replies every ``first``..``cap`` s."""

    def __init__(self, inner: Grid, *, first: float = 0.05, cap: float = 0.5) -> None:
        self.inner = inner
        self.first, self.cap = first, cap

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        pending = set(self.inner.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        pause = self.first
        out: list[Message] = []
        while pending:
            got = list(self.inner.pull_messages(pending))
            out.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (end is not None and time.monotonic() >= end):
                break
            time.sleep(pause if end is None else max(0.0, min(pause, end - time.monotonic())))
            pause = min(pause * 2, self.cap)
        return out
