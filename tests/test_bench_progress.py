"""The benchmarks' live progress bar: on stderr only, so the JSON last line on stdout survives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulations.bench import _progress  # noqa: E402
from simulations.bench._progress import BenchProgress, progress_enabled  # noqa: E402


def _run_bench(script: str, args: list[str], progress: str | None, extra: list[str] | None = None) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != _progress.ENV}
    env.update(FLWR_TELEMETRY_ENABLED="0", PYTHONPATH=str(ROOT))
    if progress is not None:
        env[_progress.ENV] = progress
    proc = subprocess.run(
        [sys.executable, str(ROOT / "simulations" / "bench" / script), *args, *(extra or [])],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


PAILLIER_QUICK = ["--quick", "--bits", "1024", "--rows", "2000", "--cols", "2", "--workers", "1"]


def test_forced_progress_draws_on_stderr_and_keeps_json_last_line() -> None:
    out, err = _run_bench("paillier.py", PAILLIER_QUICK, progress="1")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bits"] == 1024
    # the bar named the benchmark and its phases, with a step count, on stderr ...
    assert "paillier: encryption" in err and "paillier: packing" in err
    assert "/8" in err
    # ... and none of it leaked to stdout (no phase labels, no terminal control codes)
    assert "paillier:" not in out and "\x1b[" not in out


def test_no_progress_flag_and_non_tty_stay_silent() -> None:
    # the planted leak first: forced on, stderr carries the bar (so "silent" below is a real check)
    _, err_on = _run_bench("binning.py", ["--rows", "300", "--cols", "3", "--key-bits", "1024"], progress="1")
    assert "binning:" in err_on
    _, err_flag = _run_bench(
        "binning.py", ["--rows", "300", "--cols", "3", "--key-bits", "1024"], progress=None, extra=["--no-progress"]
    )
    _, err_pipe = _run_bench("binning.py", ["--rows", "300", "--cols", "3", "--key-bits", "1024"], progress=None)
    assert "binning:" not in err_flag and "binning:" not in err_pipe


def test_enabled_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a TTY
    monkeypatch.delenv(_progress.ENV, raising=False)
    assert not progress_enabled()
    monkeypatch.setenv(_progress.ENV, "1")
    assert progress_enabled() and not progress_enabled(no_progress=True)  # the command-line flag wins
    monkeypatch.setenv(_progress.ENV, "0")
    assert not progress_enabled()


def test_track_counts_steps_and_passes_items_through(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    monkeypatch.setenv(_progress.ENV, "1")
    with BenchProgress("demo", phases=2) as prog:
        prog.phase("first")
        assert list(prog.track(range(3), "rounds")) == [0, 1, 2]
        prog.phase("second")
    text = buf.getvalue()
    assert "demo: first" in text and "rounds" in text and "3/3" in text and "demo: second" in text
    monkeypatch.setenv(_progress.ENV, "0")
    with BenchProgress("demo", phases=1) as off:
        off.phase("x")
        assert list(off.track([1, 2], "y")) == [1, 2]


def test_secureboost_quick_shows_trees_and_keeps_json() -> None:
    out, err = _run_bench("secureboost.py", ["--quick"], progress="1")
    assert json.loads(out.strip().splitlines()[-1])["identical_to_plaintext"] is True
    assert "secureboost: federated training" in err and "trees" in err
    assert "secureboost:" not in out


def _load_deploy_bench():  # noqa: ANN202 - a script loaded as a module
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_deploy", ROOT / "simulations" / "bench" / "deploy.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_deploy_follower_reads_epochs_from_a_ledger(tmp_path: Path) -> None:
    """The deploy benchmark's follower turns a run's ledger rows into 'step · epoch i/n' (no ledger: no crash)."""
    import sqlite3

    deploy = _load_deploy_bench()
    seen: list[tuple[int | None, str | None]] = []
    follow = deploy._LedgerFollower(tmp_path, ("epoch", 3), lambda done=None, label=None: seen.append((done, label)))
    follow()  # the child has not created its ledger yet
    assert seen[-1][0] == 0
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    conn.execute("CREATE TABLE fedcredit_records (seq INTEGER, kind TEXT, payload TEXT)")
    for seq, epoch in ((1, 0), (2, 1)):
        payload = {"step": "hetero_lr/train", "metrics": {"bank": {"epoch": epoch}}}
        conn.execute("INSERT INTO fedcredit_records VALUES (?, ?, ?)", (seq, "step", json.dumps(payload)))
    conn.commit()
    conn.close()
    follow()
    assert seen[-1] == (2, "hetero_lr/train · epoch 2/3")
