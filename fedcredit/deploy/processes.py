"""Start long-running Flower processes and make sure every one of them stops again.

Flower's daemons spawn helpers: the SuperLink starts a ``flower-superexec`` in a *new session*
(detached), which starts ``flwr-serverapp``; each SuperNode starts a ``flower-superexec`` that
starts ``flwr-clientapp`` processes. Killing a process group is therefore not enough. This module
follows whole process trees through ``/proc`` (Linux), remembers every descendant it has seen
(keyed by pid *and* start time, so a recycled pid is never signalled), and on stop sends SIGTERM,
waits, then SIGKILLs whatever is left. No psutil needed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    sid: int
    state: str
    start: int  # start time in clock ticks since boot: (pid, start) identifies a process
    name: str


def read_proc(pid: int) -> ProcInfo | None:
    """Parse /proc/PID/stat; None if the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    head, _, rest = raw.rpartition(")")
    name = head.partition("(")[2]
    fields = rest.split()
    # fields[0] = state (field 3), [1] = ppid, [2] = pgrp, [3] = session, ..., [19] = starttime (22)
    return ProcInfo(pid=pid, ppid=int(fields[1]), sid=int(fields[3]), state=fields[0], start=int(fields[19]), name=name)


def all_processes() -> list[ProcInfo]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name))
            if info is not None:
                out.append(info)
    return out


def is_running(pid: int, start: int | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie, and (if given) started at ``start``."""
    info = read_proc(pid)
    return info is not None and info.state not in ("Z", "X") and (start is None or info.start == start)


def tree(roots: Iterable[int], procs: list[ProcInfo] | None = None) -> list[ProcInfo]:
    """``roots`` and all their descendants, plus every member of a session they lead."""
    procs = all_processes() if procs is None else procs
    children: dict[int, list[ProcInfo]] = {}
    by_sid: dict[int, list[ProcInfo]] = {}
    by_pid = {p.pid: p for p in procs}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
        by_sid.setdefault(p.sid, []).append(p)
    seen: dict[int, ProcInfo] = {}
    stack = [by_pid[r] for r in roots if r in by_pid]
    while stack:
        p = stack.pop()
        if p.pid in seen:
            continue
        seen[p.pid] = p
        stack.extend(children.get(p.pid, []))
        if p.sid == p.pid:  # a session leader: its session members belong to it even if orphaned
            stack.extend(by_sid.get(p.pid, []))
    return list(seen.values())


@dataclass
class Managed:
    """One process this deployment started (its helpers are tracked in :class:`ProcessSet`)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessSet:
    """Every process a deployment started, with every helper process seen under them."""

    procs: dict[str, Managed] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # pid -> start time
    sessions: set[int] = field(default_factory=set)

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> Managed:
        """Start ``argv`` in its own session, stdout+stderr to ``log_path``."""
        if name in self.procs and self.procs[name].alive():
            raise RuntimeError(f"process {name!r} is already running (pid {self.procs[name].pid})")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as fh:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        m = Managed(name=name, popen=popen, log_path=log_path, argv=list(argv))
        self.procs[name] = m
        info = read_proc(popen.pid)
        if info is not None:
            self.seen[popen.pid] = info.start
        self.sessions.add(popen.pid)
        log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
        return m

    def refresh(self) -> None:
        """Remember every live descendant (called while waiting, so orphans are still known)."""
        procs = all_processes()
        for p in tree(self._roots(procs), procs):
            if p.state in ("Z", "X"):
                continue
            if p.pid in self.seen and self.seen[p.pid] != p.start:
                continue  # recycled pid
            self.seen.setdefault(p.pid, p.start)
            if p.sid == p.pid:
                self.sessions.add(p.pid)

    def _roots(self, procs: list[ProcInfo]) -> list[int]:
        """Known processes still alive under their original start time, plus session members."""
        return [p.pid for p in procs if (p.pid in self.seen and self.seen[p.pid] == p.start) or p.sid in self.sessions]

    def _members(self, name: str | None = None) -> list[tuple[int, int]]:
        """(pid, start) of live processes under ``name`` (or under all) right now."""
        procs = all_processes()
        if name is None:
            roots = self._roots(procs)
        else:
            m = self.procs[name]
            roots = [m.pid] + [p.pid for p in procs if p.sid == m.pid]
        out = []
        for p in tree(roots, procs):
            if p.state in ("Z", "X"):
                continue
            known = self.seen.get(p.pid)
            if known is not None and known != p.start:
                continue
            self.seen.setdefault(p.pid, p.start)  # remember it even if its parent dies next
            if p.sid == p.pid:
                self.sessions.add(p.pid)
            out.append((p.pid, p.start))
        return out

    @staticmethod
    def _signal(members: list[tuple[int, int]], sig: int) -> None:
        for pid, start in members:
            if is_running(pid, start):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def _reap(self) -> None:
        for m in self.procs.values():
            try:
                m.popen.wait(timeout=0)
            except subprocess.TimeoutExpired:
                pass

    def _wait_gone(self, members: list[tuple[int, int]], timeout: float) -> list[tuple[int, int]]:
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            left = [(pid, st) for pid, st in members if is_running(pid, st)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to one started process and its whole tree (used to simulate a crash)."""
        self.refresh()
        members = self._members(name)
        self._signal(members, sig)
        # generous: a process in uninterruptible sleep (an fsync on a busy disk) dies only when it
        # returns to user space; a caller restarting ``name`` next needs it gone, not signalled
        self._wait_gone(members, 30.0 if sig == signal.SIGKILL else 5.0)
        return [pid for pid, _ in members]

    def stop_all(self, grace: float = 8.0, order: Iterable[str | Iterable[str]] = ()) -> list[int]:
        """SIGTERM every process (``order`` first), wait ``grace`` s, SIGKILL the rest.

        An entry of ``order`` may be a group of names: its processes are signalled together and
        waited for together (e.g. every party's SuperNode at once, then the SuperLink).
        Returns pids still running afterwards (should be empty).
        """
        self.refresh()
        stages = [[o] if isinstance(o, str) else list(o) for o in order]
        named = {n for st in stages for n in st}
        stages += [[n] for n in self.procs if n not in named]
        for stage in stages:
            members = [m for name in stage if name in self.procs for m in self._members(name)]
            self._signal(members, signal.SIGTERM)
            self._wait_gone(members, grace / 2)
        members = self._members()
        self._signal(members, signal.SIGTERM)
        left = self._wait_gone(members, grace)
        if left:
            log.warning("processes ignored SIGTERM, killing: %s", [p for p, _ in left])
            self._signal(left, signal.SIGKILL)
            left = self._wait_gone(left, 5.0)
        self._reap()
        # helpers started by a dying parent in its last moment: one more sweep
        late = self._members()
        if late:
            self._signal(late, signal.SIGKILL)
            left = self._wait_gone(late, 5.0)
        return [pid for pid, _ in left]

    def running(self) -> list[int]:
        """Pids of every live process this set started or has seen."""
        return [pid for pid, _ in self._members()]
