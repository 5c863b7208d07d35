"""Live progress for the benchmarks: which phase is running, step i of n, elapsed and ETA.

Benchmarks print human-readable lines and end with one JSON line on stdout that scripts parse,
so the bar must never touch stdout: it draws on stderr, is transient (erased when the run ends),
and is off when stderr is not a terminal (CI logs, pipes) or with ``--no-progress``.
``FEDCREDIT_PROGRESS=1`` forces it on (e.g. to see it through ``2>log`` or in a test) and
``FEDCREDIT_PROGRESS=0`` forces it off; ``--no-progress`` beats both. Redraws happen at phase
boundaries and between loop iterations, outside the timed calls; inside a timed loop a step is
only counted (``steps()``: a few microseconds) and a rich thread redraws twice a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
ENV = "FEDCREDIT_PROGRESS"


def add_progress_flag(ap: argparse.ArgumentParser) -> None:
    """Give a benchmark's parser the ``--no-progress`` switch every benchmark shares."""
    ap.add_argument("--no-progress", action="store_true", help="no live progress bar on stderr")


def progress_enabled(no_progress: bool = False) -> bool:
    """``--no-progress`` wins; else ``FEDCREDIT_PROGRESS`` decides; else on for an interactive stderr."""
    forced = os.environ.get(ENV, "").strip().lower()
    if no_progress or forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


class BenchProgress:
    """One transient bar over a benchmark's phases, plus a sub-bar for each long loop.

    ``phase(label)`` marks the previous phase done and names the current one; ``track(items,
    label)`` wraps a loop (repeats, rounds, sizes) in its own bar with step i of n and an ETA.
    Disabled, both are pass-throughs, so benchmark code is the same either way.
    """

    def __init__(self, name: str, phases: int, *, no_progress: bool = False) -> None:
        self.enabled = progress_enabled(no_progress)
        self._name = name
        self._phases = phases
        self._started = False
        self._task: TaskID | None = None
        self._progress: Progress | None = None
        if self.enabled:
            console = Console(file=sys.stderr, force_terminal=True if os.environ.get(ENV) else None)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                refresh_per_second=2,  # the redraw thread competes with the timed work for cores: keep it rare
                # rich would move prints to stderr: only when both streams are the same screen anyway,
                # never when stdout is piped or captured (its JSON last line must stay on stdout)
                redirect_stdout=sys.stdout.isatty() and sys.stderr.isatty(),
                redirect_stderr=True,  # late warnings print above the bar, not through it
            )

    def __enter__(self) -> BenchProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(f"{self._name}: starting", total=self._phases)
            self._progress.refresh()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, label: str) -> None:
        """Name the phase now running; the one before it counts as done."""
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, description=f"{self._name}: {label}", advance=1 if self._started else 0)
        self._started = True
        self._progress.refresh()

    def track(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items`` while a sub-bar shows ``label`` step i of n (removed when the loop ends)."""
        if self._progress is None:
            yield from items
            return
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        sub = self._progress.add_task(f"  {label}", total=total)
        self._progress.refresh()
        try:
            for item in items:
                yield item
                self._progress.advance(sub)
                self._progress.refresh()
        finally:
            self._progress.remove_task(sub)

    @contextmanager
    def steps(self, label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A sub-bar for a loop inside a timed region: ``tick()`` counts one step, ``tick(k)`` says
        k are done (``label=`` renames it); neither redraws nor does I/O (rich's refresh thread
        draws), so the timed code pays a lock and an assignment per step."""
        if self._progress is None:
            yield lambda done=None, label=None: None
            return
        progress = self._progress
        sub = progress.add_task(f"  {label}", total=total)

        def tick(done: int | None = None, label: str | None = None) -> None:
            if label is not None:
                progress.update(sub, description=f"  {label}")
            if done is None:
                progress.advance(sub)
            else:
                progress.update(sub, completed=done)

        try:
            yield tick
        finally:
            progress.remove_task(sub)
