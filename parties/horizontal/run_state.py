"""What the coordinator's pieces of one horizontal run share: the banks, the run's state, queries.

:func:`parties.horizontal.server.run` builds one :class:`HorizontalRun`; the strategy, the CKKS
round and the evaluation read and update it. Queries to banks (set-up, key hand-over, release)
go through :func:`ask` and their answers through :func:`expect`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from flwr.app import Message

from fedcredit.config import Scenario
from fedcredit.horizontal import ckks as hckks
from fedcredit.horizontal.settings import HorizontalSettings
from parties.common.recorder import Recorder
from parties.horizontal import transport
from parties.horizontal.audit import RecordingGrid

T = TypeVar("T")
MIN_CONTRIBUTORS = 2


class HorizontalRunError(RuntimeError):
    """The run cannot go on; the message names the party and step."""


@dataclass
class Bank:
    name: str
    node_id: int
    n_train: int
    n_features: int
    schema: str
    x25519: bytes
    x25519_sig: bytes = b""


@dataclass
class HorizontalRun:
    """Everything the coordinator's workflow pieces share during one run."""

    scenario: Scenario
    settings: HorizontalSettings
    recorder: Recorder
    grid: RecordingGrid
    banks: list[Bank]
    holdout: Any = None
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    n_ref: int = 0
    stats_cfg: dict[str, Any] = field(default_factory=dict)
    moments: np.ndarray | None = None
    ckks_agg: hckks.CkksAggregator | None = None
    key_fp: str = ""
    history: list[dict] = field(default_factory=list)
    secagg_ranges: list[float] = field(default_factory=list)
    ckks_upload_bytes: list[int] = field(default_factory=list)
    ckks_signed: dict[str, list[dict]] = field(default_factory=dict)  # task -> last round's signed uploads
    started: float = field(default_factory=time.time)

    @property
    def by_node(self) -> dict[int, Bank]:
        return {b.node_id: b for b in self.banks}

    def flush(self, metrics: dict | None = None) -> None:
        """Write the recorded traffic as ledger step records."""
        for step, rnd, entries in self.grid.take():
            self.recorder.step(step, rnd, entries, metrics or {})


def ask(
    grid: RecordingGrid, node_ids: list[int], action: str, payloads: dict[int, Any], timeout: float
) -> dict[int, Message]:
    """Send ``query.<action>`` with each node's payload; the replies by node id."""
    msgs = [transport.query_message(n, action, payloads[n]) for n in node_ids]
    return {r.metadata.src_node_id: r for r in grid.send_and_receive(msgs, timeout=timeout)}


def expect(reply: Message | None, cls: type[T], who: str, step: str) -> T:
    """The answer ``reply`` carries, or the error that names the bank and the step."""
    if reply is None:
        raise HorizontalRunError(f"{who} failed at {step}: no reply within the timeout")
    if reply.has_error():
        raise HorizontalRunError(f"{who} failed at {step}: {reply.error.reason}")
    return transport.read_payload(reply, cls)
