"""PSI as a restartable relay party: rebuilt from node-local state at every step, same result."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.data import uscc
from protocols.common.party import ProtocolError, run_local
from protocols.psi.party import PsiRelayParty


def _ids(n: int, seed: int) -> list[str]:
    return uscc.generate(n, np.random.default_rng(seed))


def test_restart_every_step_gives_the_same_aligned_intersection():
    ids = _ids(600, 1)
    a, b = ids[:400], list(reversed(ids[200:])) + ["not-a-uscc"]
    inputs = {"bank": a, "centre": b}
    parties = {
        "bank": PsiRelayParty("bank", "centre", "A", a, session="s1"),
        "centre": PsiRelayParty("centre", "bank", "B", b, session="s1"),
    }
    restarts = []

    def restart(name, party):
        restarts.append(name)
        state = party.to_state()
        assert not any(u.encode() in state for u in inputs[name][:50])  # ids are re-read, not stored
        return PsiRelayParty.from_state(state, inputs[name], session="s1")

    run_local(parties, restart=restart)
    ra, rb = parties["bank"].result(), parties["centre"].result()
    assert restarts and ra.size == rb.size == 200
    assert [a[i] for i in ra.rows] == [b[j] for j in rb.rows]
    assert set(a[i] for i in ra.rows) == set(a) & set(b)
    assert rb.stats["rejected_invalid"] == 1


def test_restore_with_different_ids_is_refused():
    ids = _ids(100, 2)
    p = PsiRelayParty("bank", "centre", "A", ids, session="s")
    p.start()
    with pytest.raises(ProtocolError, match="ids changed"):
        PsiRelayParty.from_state(p.to_state(), ids[:-1], session="s")
