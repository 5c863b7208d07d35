"""A small real vertical run shared by the transparency-wiring tests (tests/test_cosign_*.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import write_vertical_subset

from fedcredit import config
from parties.in_process import run_scenario_in_process

N_ROWS = 800


def small_run(work: Path, *, extra_centre: str = "") -> tuple[dict, Path]:
    """Run a 2-epoch hetero-LR over the first N_ROWS firms in-process; returns (status, run dir)."""
    write_vertical_subset(work, N_ROWS)
    sc = config.loads(
        f"""
[run]
name = "cosign"
mode = "vertical-lr"
seed = 42
[parties.bank]
role = "bank"
data = "{work / "bank.csv"}"
[parties.credit_centre]
role = "credit_centre"
data = "{work / "centre.csv"}"
{extra_centre}
[consent]
mode = "demo"
[lr]
epochs = 1
batch_size = 512
key_bits = 1024
insecure_test_key = true
"""
    )
    out = work / "run"
    return run_scenario_in_process(sc, out), out
