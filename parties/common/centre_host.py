"""One credit-centre node serving several banks' runs at once, each run sealed off from the others.

Why: a platform's centre serves dozens of banks, each training and scoring its own joint model
against the same public table. The centre's node must run those runs concurrently without one
bank's run reaching another's state, keys, consent material or logs.

How isolation is enforced (not just hoped for):

* every run gets its own :class:`HostedRun` slot: its own Flower ``Context`` (the node-local
  state where PSI secrets, Paillier keys, channel keys and consent summaries live), its own
  ClientApp (built for that run's scenario) and its own run directory (egress log, model part);
* :meth:`CentreHost.handle` routes a message by the run key the *transport* assigns (Flower's
  run id in deployment, the grid in-process), never by anything in the message body, so a bank's
  messages can only reach the slot of the run they belong to; an unknown key is refused;
* a slot's state is dropped when its run is closed, so nothing of a finished run stays in memory;
* the only things runs share are read-only: the centre's own table (cached per process) and the
  stateless worker pools of the crypto kernels.

Concurrency: at most ``max_concurrent`` runs execute at once (a thread pool of that size); more
runs wait in a FIFO queue of at most ``max_queued``; beyond that :meth:`submit` refuses with
:class:`HostBusy` (the coordinator retries later) instead of growing without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from flwr.app import Context, Message, RecordDict

from parties.common.grid import ClientHandler

T = TypeVar("T")


class HostBusy(RuntimeError):
    """The centre's queue is full: the run was not admitted (retry later)."""


class UnknownRun(KeyError):
    """A message for a run this host does not hold (never started, or already closed)."""


@dataclass
class HostedRun:
    """One bank's run on the centre's node: everything of the run that is not shared."""

    key: str
    bank: str
    app: ClientHandler
    out_dir: Path
    context: Context
    messages: int = 0
    cpu_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class CentreHost:
    """The centre's node as a host of concurrent, isolated runs (see the module docstring)."""

    def __init__(self, node_id: int, *, max_concurrent: int = 2, max_queued: int = 64) -> None:
        if max_concurrent < 1 or max_queued < 0:
            raise ValueError("max_concurrent must be >= 1 and max_queued >= 0")
        self.node_id, self.max_concurrent, self.max_queued = node_id, max_concurrent, max_queued
        self._runs: dict[str, HostedRun] = {}
        self._lock = threading.Lock()
        self._pending = 0
        self._running = 0
        self.peak_running = 0
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="centre-run")

    # -- run slots ------------------------------------------------------------------------
    def open_run(self, key: str, bank: str, app: ClientHandler, out_dir: Path, node_config: dict) -> HostedRun:
        """A fresh slot for run ``key`` of ``bank`` (refused if the key is in use)."""
        with self._lock:
            if key in self._runs:
                raise ValueError(f"centre host: run {key!r} is already open")
            ctx = Context(
                run_id=0, node_id=self.node_id, node_config=dict(node_config), state=RecordDict(), run_config={}
            )
            slot = HostedRun(key=key, bank=bank, app=app, out_dir=Path(out_dir), context=ctx)
            self._runs[key] = slot
            return slot

    def close_run(self, key: str) -> None:
        """Forget run ``key``: its node-local state leaves memory (its files stay in its directory)."""
        with self._lock:
            slot = self._runs.pop(key, None)
        if slot is not None:
            slot.context.state = RecordDict()

    def runs(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def slot(self, key: str) -> HostedRun:
        with self._lock:
            if key not in self._runs:
                raise UnknownRun(f"centre host: no open run {key!r}")
            return self._runs[key]

    def handle(self, key: str, message: Message) -> Message:
        """Answer ``message`` of run ``key`` with that run's app and state only."""
        import time

        slot = self.slot(key)
        with slot.lock:  # one message of a run at a time, as a SuperNode does
            t0 = time.thread_time()
            try:
                return slot.app(message, slot.context)
            finally:
                slot.messages += 1
                slot.cpu_seconds += time.thread_time() - t0

    # -- concurrency limit and queue ------------------------------------------------------
    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` when a slot is free (FIFO); :class:`HostBusy` if the queue is full."""
        with self._lock:
            if self._pending >= self.max_concurrent + self.max_queued:
                raise HostBusy(
                    f"centre host: {self._pending} runs admitted (limit {self.max_concurrent} running + "
                    f"{self.max_queued} queued)"
                )
            self._pending += 1

        def wrapped() -> T:
            with self._lock:
                self._running += 1
                self.peak_running = max(self.peak_running, self._running)
            try:
                return job()
            finally:
                with self._lock:
                    self._running -= 1
                    self._pending -= 1

        return self._pool.submit(wrapped)

    def shutdown(self) -> None:
        """Wait for admitted runs, then stop the worker threads."""
        self._pool.shutdown(wait=True)
