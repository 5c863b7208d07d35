"""Live progress of a run, read from its ledger as the coordinator appends to it.

The ledger is the one record every run mode writes step by step (simulation, in-process,
deployment with the coordinator in another process), so following it needs no hook into the
relay and shows exactly what the auditor will see: each step's phase, and the epoch / tree /
round / batch numbers the parties published in their step summaries. A daemon thread polls the
ledger read-only (SQLite WAL: readers never block the writer) and drives a rich progress bar
with elapsed time and an ETA over the scenario's epochs, trees or rounds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fedcredit.config import Scenario

UNITS = {
    "vertical-lr": ("epoch", "lr", "epochs"),
    "secureboost": ("tree", "secureboost", "n_trees"),
    "scorecard": ("epoch", "lr", "epochs"),  # its training phase is hetero-LR on WOE
}


def planned_units(scenario: Scenario) -> tuple[str, int | None]:
    """What the run counts (epoch, tree, round) and how many it plans, for the ETA."""
    if scenario.mode == "horizontal":
        return "round", int(scenario.settings("horizontal").rounds)  # type: ignore[attr-defined]
    if scenario.mode in UNITS:
        unit, section, key = UNITS[scenario.mode]
        return unit, int(getattr(scenario.settings(section), key))
    return "step", None


@dataclass
class ProgressState:
    """What the ledger said so far: the current phase and the highest unit number seen."""

    phase: str = "starting"
    step: str = ""
    done: int = 0  # completed epochs/trees/rounds
    batch: int | None = None
    records: int = 0
    ended: str | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def absorb(self, kind: str, payload: dict, unit: str) -> None:
        self.records += 1
        if kind == "run_end":
            self.ended = str(payload.get("status"))
        step = payload.get("step")
        if kind != "step" or not isinstance(step, str):
            if kind == "round" or "round" in payload and unit == "round":
                self._seen(payload.get("round"), unit)
            return
        self.step = step
        self.phase = step.split("/")[0]
        for party_metrics in (payload.get("metrics") or {}).values():
            if not isinstance(party_metrics, dict):
                continue
            self._seen(party_metrics.get(unit), unit)
            if isinstance(party_metrics.get("batch"), int):
                self.batch = party_metrics["batch"]
        if unit == "round" and isinstance(payload.get("round"), int):
            self._seen(payload["round"], unit)

    def _seen(self, value: object, unit: str) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            # epochs and trees are reported 0-based as they finish; rounds 1-based
            self.done = max(self.done, value + (0 if unit == "round" else 1))


def read_new(ledger: Path, after: int) -> list[tuple[int, str, dict]]:
    """Ledger records with ``seq > after`` (read-only; empty if the ledger does not exist yet)."""
    if not ledger.exists():
        return []
    try:
        conn = sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = conn.execute(
                "SELECT seq, kind, payload FROM fedcredit_records WHERE seq > ? ORDER BY seq", (after,)
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []  # not created yet, or mid-creation: try again next poll
    out = []
    for seq, kind, payload in rows:
        try:
            out.append((int(seq), str(kind), json.loads(payload)))
        except (TypeError, ValueError):
            out.append((int(seq), str(kind), {}))
    return out


class LedgerProgress:
    """``with LedgerProgress(run_dir, scenario, console): run()`` shows progress while ``run`` works."""

    def __init__(self, run_dir: Path, scenario: Scenario, console: Console, *, interval: float = 0.5):
        self.ledger = Path(run_dir) / "ledger.sqlite"
        self.unit, self.total = planned_units(scenario)
        self.state = ProgressState()
        self.interval = interval
        self._seq = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def describe(self) -> str:
        """``phase/step · epoch 3/10 · batch 7``: where the run is, in the ledger's words."""
        s = self.state
        text = s.step or ("starting the federation" if s.phase == "starting" else s.phase)
        if self.total:
            text += f" · {self.unit} {s.done if s.ended else min(s.done + 1, self.total)}/{self.total}"
        if s.batch is not None and s.phase == "hetero_lr":
            text += f" · batch {s.batch}"
        return text

    def poll(self) -> None:
        for seq, kind, payload in read_new(self.ledger, self._seq):
            self._seq = seq
            self.state.absorb(kind, payload, self.unit)
        if self.task is not None:
            self.progress.update(
                self.task, description=self.describe(), completed=min(self.state.done, self.total or 0)
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> LedgerProgress:
        self.task = self.progress.add_task(self.describe(), total=self.total)
        self.progress.start()
        self._thread = threading.Thread(target=self._loop, name="fedcredit-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()
        self.progress.stop()
