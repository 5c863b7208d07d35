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

from flwr.app import Message
from flwr.serverapp import Grid

from parties.common.delegating import DelegatingGrid


class PromptGrid(DelegatingGrid):
    """``inner`` with a ``send_and_receive`` that polls for replies every ``first``..``cap`` s."""

    def __init__(self, inner: Grid, *, first: float = 0.05, cap: float = 0.5) -> None:
        self.inner = inner
        self.first, self.cap = first, cap

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
