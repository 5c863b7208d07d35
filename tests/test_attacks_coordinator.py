"""The untrusted-coordinator attack suite (simulations/attack_cases/coordinator.py) as tests.

Each case plants its own forgery, substitution, replay, alteration, drop or injection through a
tampering coordinator against real parties; the verdict comes from the honest nodes' own logs,
status.json and ``ledger verify`` (see the module). A case whose tamper never fired fails.
"""

from __future__ import annotations

import pytest

from simulations.attack_cases import load_all

CASES = sorted(n for n in load_all() if n.startswith("coordinator/"))


def test_the_suite_covers_every_protocol_and_attack_named_in_the_issue():
    for needed in (
        "coordinator/forge-sender/psi",
        "coordinator/forge-sender/hetero-lr",
        "coordinator/forge-sender/secureboost",
        "coordinator/key-substitution/paillier",
        "coordinator/key-substitution/psi",
        "coordinator/replay-step/hetero-lr",
        "coordinator/replay-run/hetero-lr",
        "coordinator/alter-byte/hetero-lr",
        "coordinator/drop/hetero-lr",
        "coordinator/inject/hetero-lr",
        "coordinator/forge-sender/inference",
        "coordinator/key-substitution/inference",
        "coordinator/secagg-threshold-1/horizontal",
        "coordinator/two-bank-round/horizontal",
        "coordinator/ckks-single-upload/horizontal",
        "coordinator/ckks-forged-uploads/horizontal",
        "coordinator/key-substitution/ckks",
    ):
        assert needed in CASES


@pytest.mark.parametrize("name", CASES)
def test_coordinator_attack_is_refused_or_detected_and_leaks_nothing(name, tmp_path):
    r = load_all()[name](tmp_path)
    assert r.refused_or_detected, r.detail
    assert not r.leaked, r.detail
    assert r.by and r.step, r
