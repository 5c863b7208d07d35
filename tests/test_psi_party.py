"""PSI as a restartable relay party: rebuilt from node-local state at every step, same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedcredit.data import uscc
from protocols.common import wire
from protocols.common.party import Envelope, ProtocolError, run_local
from protocols.psi import PsiProtocolError, PsiReblinded
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
    # a finished party restored from its state gives the same result, ids included
    again = PsiRelayParty.from_state(parties["bank"].to_state(), a, session="s1").result()
    assert again.ids == ra.ids and again.rows.tolist() == ra.rows.tolist() and again.stats == ra.stats


def test_restore_with_different_ids_is_refused():
    ids = _ids(100, 2)
    p = PsiRelayParty("bank", "centre", "A", ids, session="s")
    p.start()
    with pytest.raises(ProtocolError, match="digest mismatch"):
        PsiRelayParty.from_state(p.to_state(), ids[:-1], session="s")
    with pytest.raises(ProtocolError, match="cannot be restored"):
        PsiRelayParty.from_state(b"not a state", ids, session="s")


def test_relay_party_refuses_wrong_sender_and_tampered_keys():
    ids = _ids(60, 3)
    a = PsiRelayParty("bank", "centre", "A", ids[:40], session="s")
    b = PsiRelayParty("centre", "bank", "B", ids[20:], session="s")
    (to_b,), (to_a,) = a.start(), b.start()
    with pytest.raises(ProtocolError, match="expected exactly one message from 'centre'"):
        a.receive([Envelope("mallory", "bank", to_a.payload)])
    (keys_to_b,), (keys_to_a,) = a.receive([to_a]), b.receive([to_b])
    sealed = wire.decode(keys_to_a.payload, PsiReblinded)
    tampered = dataclasses.replace(sealed, sealed=bytes([sealed.sealed[0] ^ 1]) + sealed.sealed[1:])
    with pytest.raises(PsiProtocolError, match="fail authentication"):
        a.receive([Envelope("centre", "bank", wire.encode(tampered))])
    a.receive([keys_to_a])
    b.receive([keys_to_b])
    assert a.result().ids == b.result().ids and a.result().size == 20
