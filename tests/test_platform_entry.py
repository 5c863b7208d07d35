"""``simulations/platform.py``: the command issue 19 names runs the platform simulation (that it
does not shadow the standard library's ``platform``: tests/test_simulations_layout.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_platform_script_runs_the_credit_platform_simulation():
    res = _run("simulations/platform.py", "--help")
    assert res.returncode == 0, res.stderr
    assert "one credit centre of N firms serving K banks" in res.stdout.replace("\n", " ").replace("  ", " ")
    assert "--firms" in res.stdout and "--banks" in res.stdout
