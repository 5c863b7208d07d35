"""A vertical-LR node restores its party from frozen, once-built inputs at every step.

The real coordinator and ClientApp on the in-process grid: the training phase's restores must
hit the per-process memo (no row re-digested after the first step of each node), and the run
must still finish with the same kind of model part.
"""

from __future__ import annotations

import pytest
from conftest import write_vertical_subset

from fedcredit import config
from parties.in_process import run_scenario_in_process
from parties.vertical import training_phases
from protocols.hetero_lr import _base

SCENARIO = """
[run]
name = "memo"
mode = "vertical-lr"
seed = 42
[parties.bank]
role = "bank"
data = "{bank}"
[parties.credit_centre]
role = "credit_centre"
data = "{centre}"
[consent]
mode = "demo"
[lr]
epochs = 1
batch_size = 256
key_bits = 1024
insecure_test_key = true
"""


def test_training_restores_reuse_the_frozen_inputs(tmp_path):
    write_vertical_subset(tmp_path, 800)
    sc = config.loads(SCENARIO.format(bank=tmp_path / "bank.csv", centre=tmp_path / "centre.csv"))
    training_phases._ALIGNED._memo.clear()
    hits, misses = _base._DIGESTS.hits, _base._DIGESTS.misses
    # relayed step by step (a streamed epoch restores once per epoch): every step restores
    status = run_scenario_in_process(sc, tmp_path / "out", stream=False)
    assert status["status"] == "completed", status
    assert _base._DIGESTS.hits - hits >= 6  # every restore after each node's first build
    assert _base._DIGESTS.misses - misses <= 2  # one digest per node
    assert {w for w, _ in training_phases._ALIGNED._memo} >= {"bank", "credit_centre"}
    for _, _, d in training_phases._ALIGNED._memo.values():
        assert all(not a.flags.writeable for a in d.values())


@pytest.fixture(autouse=True)
def _forget():
    yield
    training_phases._ALIGNED._memo.clear()
