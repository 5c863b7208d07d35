"""Shared fixtures: Flower/Ray state in temp dirs, telemetry off, small real-data subsets."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_HOME", tempfile.mkdtemp(prefix="fedcredit-test-flwr-"))
os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="fcray-", dir="/tmp"))


def write_vertical_subset(directory, n_rows: int):
    """The first ``n_rows`` bank customers of default_credit (raw values) and the centre's rows for
    them, written as ``bank.csv`` / ``centre.csv`` in ``directory``; returns both DataFrames."""
    import numpy as np
    import pandas as pd

    from fedcredit.data.default_credit import load_vertical
    from fedcredit.data.schema import LABEL_COLUMN

    bank, centre = load_vertical("all", scaled=False)
    keep = set(bank.ids[:n_rows])
    b = pd.DataFrame(bank.features[:n_rows], columns=bank.feature_names)
    b.insert(0, "uscc", bank.ids[:n_rows])
    b.insert(1, LABEL_COLUMN, bank.labels[:n_rows])
    cm = np.array([u in keep for u in centre.ids])
    c = pd.DataFrame(centre.features[cm], columns=centre.feature_names)
    c.insert(0, "uscc", np.array(centre.ids)[cm])
    b.to_csv(f"{directory}/bank.csv", index=False)
    c.to_csv(f"{directory}/centre.csv", index=False)
    return b, c


# -- no silent passes ------------------------------------------------------------------------------
#
# A test that needs an optional component skips with a reason naming it ("optional component
# 'X': ..."), which ``-ra`` (in addopts) prints. Where the component is expected (CI installs
# everything: .ci/run sets FEDCREDIT_REQUIRE=all), such a skip is turned into a failure: set
# FEDCREDIT_REQUIRE to "all" or to a comma-separated list of component names.

import pytest  # noqa: E402


def required_components() -> set[str]:
    raw = os.environ.get("FEDCREDIT_REQUIRE", "")
    return {c.strip() for c in raw.split(",") if c.strip()}


def needs(module: str, component: str | None = None):
    """``import module``, or skip naming the component (a failure where FEDCREDIT_REQUIRE expects it)."""
    component = component or module
    return pytest.importorskip(module, reason=f"optional component {component!r}: module {module!r} not installed")


def _skip_is_required(reason: str) -> bool:
    required = required_components()
    if not required:
        return False
    return "all" in required or any(f"component {c!r}" in reason for c in required)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        reason = str(rep.longrepr[2]) if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if _skip_is_required(reason):
            rep.outcome = "failed"
            rep.longrepr = f"skipped, but FEDCREDIT_REQUIRE={os.environ['FEDCREDIT_REQUIRE']} expects it: {reason}"


# -- time budgets for heavy fixtures ---------------------------------------------------------------
#
# pytest-timeout counts a fixture's set-up against the first test that requests it, so a module
# fixture running many scenarios would eat that test's timeout and fail it under load. Heavy
# fixtures run inside ``time_budget`` instead, and their tests use ``timeout(..., func_only=True)``.

import contextlib  # noqa: E402
import signal  # noqa: E402


@contextlib.contextmanager
def time_budget(seconds: float, what: str):
    """Raise TimeoutError naming ``what`` if the block runs longer than ``seconds`` (main thread)."""

    def expired(_signum, _frame):
        raise TimeoutError(f"{what} exceeded its time budget of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
