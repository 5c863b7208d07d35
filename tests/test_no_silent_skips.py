"""The "no silent passes" switch: with FEDCREDIT_REQUIRE set, a skip for an expected component fails.

Runs a scratch test module in a child pytest (``pytester``-free: a subprocess) so the switch is
exercised end to end, both ways: unset, the skip is reported with its reason by ``-ra``; set, the
same skip is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRATCH = """
from conftest import needs

def test_uses_a_missing_component():
    needs("fedcredit_no_such_module_xyz", "tenseal")
"""


def _run(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    tests = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((tests / "conftest.py").read_text())
    (tmp_path / "test_scratch.py").write_text(SCRATCH)
    env = {k: v for k, v in os.environ.items() if k != "FEDCREDIT_REQUIRE"}
    if require is not None:
        env["FEDCREDIT_REQUIRE"] = require
    cmd = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_skip_is_shown_with_its_reason_when_not_required(tmp_path):
    r = _run(tmp_path, None)
    assert r.returncode == 0, r.stdout
    assert "SKIPPED" in r.stdout and "optional component 'tenseal'" in r.stdout


def test_skip_of_a_required_component_fails(tmp_path):
    for require in ("all", "gmpy2,tenseal"):
        r = _run(tmp_path, require)
        assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout
        assert "FEDCREDIT_REQUIRE" in r.stdout


def test_skip_of_a_component_not_required_stays_a_skip(tmp_path):
    r = _run(tmp_path, "gmpy2")
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout


def test_time_budget_stops_a_fixture_that_overruns_and_names_it():
    import time

    from conftest import time_budget

    t0 = time.monotonic()
    try:
        with time_budget(0.3, "the slow fixture"):
            time.sleep(5)
    except TimeoutError as exc:
        assert "the slow fixture" in str(exc) and "time budget" in str(exc)
    else:
        raise AssertionError("the budget did not fire")
    assert time.monotonic() - t0 < 3
    with time_budget(5, "a quick block"):  # a block within its budget is untouched
        pass
