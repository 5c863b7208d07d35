"""One centre node, two banks' vertical runs at once: each run's state, keys, consent material and
logs stay out of the other's reach; the concurrency limit and the queue hold."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fedcredit import config
from fedcredit.data.synth import generate
from parties.common.centre_host import CentreHost, HostBusy, UnknownRun
from parties.common.grid import FIRST_NODE_ID
from parties.hosted import submit_run


def scenario(data: Path, bank: str) -> config.Scenario:
    return config.loads(f"""
[run]
name = "hosted-{bank}"
mode = "vertical-lr"
seed = 7
[parties.{bank}]
role = "bank"
data = "synthetic:{data}"
[parties.credit_centre]
role = "credit_centre"
data = "synthetic:{data}"
[consent]
mode = "demo"  # synthetic firms: generated demo consent tokens (docs/consent.md)
[lr]
epochs = 1
batch_size = 1024
key_bits = 1024
insecure_test_key = true
""")


def _blobs(state) -> list[bytes]:
    """Every value a node keeps in its Context, as bytes."""
    out = []
    for rec in state.config_records.values():
        for v in rec.values():
            out.append(v if isinstance(v, bytes) else str(v).encode())
    return out


class _SnoopingHost(CentreHost):
    """Records every value each run's centre state ever held (after each message)."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.seen: dict[str, list[bytes]] = {}

    def handle(self, key, message):
        reply = super().handle(key, message)
        self.seen.setdefault(key, []).extend(_blobs(self.slot(key).context.state))
        return reply


class _LeakyHost(_SnoopingHost):
    """Planted leak: all runs share one centre Context (what the host must never do)."""

    def open_run(self, key, bank, app, out_dir, node_config):
        slot = super().open_run(key, bank, app, out_dir, node_config)
        if hasattr(self, "_shared"):
            slot.context = self._shared
        else:
            self._shared = slot.context
        return slot


def _secrets(blobs: list[bytes]) -> set[bytes]:
    return {b for b in blobs if len(b) >= 32}


def _files(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file())


def _leaks(host: _SnoopingHost, outs: dict[str, Path]) -> list[str]:
    """Each value of one run's centre state found in the other run's state or centre directory."""
    found = []
    for a, b in (("a", "b"), ("b", "a")):
        other_state = b"\x00".join(host.seen[b])
        other_files = _files(outs[b] / "nodes" / "credit_centre")
        for s in _secrets(host.seen[a]):
            if s in other_state or s in other_files:
                found.append(f"run {a}'s centre value ({len(s)} B) reachable from run {b}")
    return found


def _run_two(host: CentreHost, data: Path, tmp: Path, *, complete: bool = True) -> dict[str, Path]:
    outs = {k: tmp / f"run_{k}" for k in ("a", "b")}
    futs = [submit_run(host, k, f"bank_{k}", scenario(data, f"bank_{k}"), outs[k], keep_slot=True) for k in outs]
    for f in futs:
        status = f.result(timeout=600)["status"]
        assert status == "completed" or not complete
    return outs


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    generate(4000, 2, d, seed=5)
    return d


def test_two_banks_run_concurrently_and_isolated(data, tmp_path) -> None:
    host = _SnoopingHost(FIRST_NODE_ID + 1, max_concurrent=2)
    try:
        outs = _run_two(host, data, tmp_path)
    finally:
        host.shutdown()
    assert host.peak_running == 2  # the two runs overlapped on the one centre node
    assert _leaks(host, outs) == []
    # each run's centre has its own signing identity and its own logs, naming only its run
    # (node keys are the run's operator configuration, provisioned per run directory: issue 13)
    key_a, key_b = ((outs[k] / "keys" / "credit_centre" / "egress.key").read_bytes() for k in ("a", "b"))
    assert key_a != key_b
    assert not any(key_b in b for b in host.seen["a"]) and not any(key_a in b for b in host.seen["b"])
    run_ids = {k: (outs[k] / "status.json").read_text() for k in outs}
    assert all((outs[k] / "nodes/credit_centre/egress.sqlite").is_file() for k in outs)
    assert not (outs["a"] / "nodes" / "bank_b").exists() and not (outs["b"] / "nodes" / "bank_a").exists()
    assert run_ids["a"] != run_ids["b"]
    # a run's messages cannot address a slot that is not open
    host.close_run("a")
    with pytest.raises(UnknownRun):
        host.handle("a", None)  # type: ignore[arg-type]
    assert len(host.slot("b").context.state.config_records) > 0
    host.close_run("b")


def test_the_isolation_check_catches_a_shared_centre_state(data, tmp_path) -> None:
    host = _LeakyHost(FIRST_NODE_ID + 1, max_concurrent=2)
    try:
        outs = _run_two(host, data, tmp_path, complete=False)  # a shared state may also break the runs
    finally:
        host.shutdown()
    assert _leaks(host, outs)  # the planted leak is found


def test_concurrency_limit_and_queue() -> None:
    host = CentreHost(1000, max_concurrent=2, max_queued=1)
    gate = threading.Event()
    running: list[int] = []

    def job() -> int:
        running.append(1)
        gate.wait(10)
        return 1

    futs = [host.submit(job) for _ in range(3)]  # 2 run, 1 queued
    with pytest.raises(HostBusy, match="limit 2 running"):
        host.submit(job)
    time.sleep(0.3)
    assert len(running) == 2  # the third waits in the queue
    gate.set()
    assert [f.result(timeout=10) for f in futs] == [1, 1, 1]
    assert host.peak_running == 2
    host.shutdown()
