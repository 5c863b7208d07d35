"""``simulations/platform.py``: the command issue 19 names runs the platform simulation, and the
file does not shadow the standard library's ``platform`` for the other scripts in its directory."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_platform_script_runs_the_credit_platform_simulation():
    res = _run("simulations/platform.py", "--help")
    assert res.returncode == 0, res.stderr
    assert "one credit centre of N firms serving K banks" in res.stdout.replace("\n", " ").replace("  ", " ")
    assert "--firms" in res.stdout and "--banks" in res.stdout


def test_scripts_beside_it_still_get_the_standard_library_platform():
    code = "import platform, sys; print(platform.__file__); print(platform.python_version() == sys.version.split()[0])"
    res = _run("-c", f"import sys; sys.path.insert(0, '.'); {code}", cwd=ROOT / "simulations")
    assert res.returncode == 0, res.stderr
    where, same = res.stdout.split()
    assert Path(where).resolve() == (Path(sysconfig.get_paths()["stdlib"]) / "platform.py").resolve()
    assert same == "True"
