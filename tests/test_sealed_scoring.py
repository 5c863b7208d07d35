"""Score-phase partial scores (hetero-LR) and direction bits (SecureBoost) travel sealed party to
party: the relay sees sizes only, and a tampered or re-keyed answer does not open (#13)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols.common import wire
from protocols.common.party import Envelope, ProtocolError, run_local
from protocols.hetero_lr.scoring import BankScorer, CentreScorer, SealedPartialScores, sigmoid

RNG = np.random.default_rng(3)
XB, XC = RNG.normal(size=(64, 4)), RNG.normal(size=(64, 3))
WB, WC = RNG.normal(size=5), RNG.normal(size=3)


def _pair() -> dict:
    return {"bank": BankScorer("bank", "centre", WB, XB), "centre": CentreScorer("centre", "bank", WC, XC)}


def test_partial_scores_reach_the_bank_but_not_the_relay():
    parties = _pair()
    transcript = run_local(parties)
    u_c = XC @ WC
    np.testing.assert_allclose(parties["bank"].scores, sigmoid(XB @ WB[:-1] + WB[-1] + u_c), rtol=1e-12)
    (answer,) = transcript.sent_by("centre")
    assert answer.kind == "SealedPartialScores"
    # what the relay sees: no partial score, in any byte order or precision it could try
    for v in u_c[:20]:
        for pattern in (np.float64(v).tobytes(), np.float64(v).byteswap().tobytes(), np.float32(v).tobytes()):
            assert pattern not in answer.payload


@pytest.mark.parametrize("what", ["flip a sealed byte", "swap the centre's channel key"])
def test_a_tampered_answer_does_not_open(what):
    parties = _pair()
    request = parties["bank"].start()
    (answer,) = parties["centre"].receive(request)
    msg = wire.decode(answer.payload, SealedPartialScores)
    if what == "flip a sealed byte":
        msg = dataclasses.replace(msg, sealed=msg.sealed[:-1] + bytes([msg.sealed[-1] ^ 1]))
    else:  # a relay that re-keys the answer to read it cannot make it open at the bank either
        from protocols.common.channel import new_private_key, public_key_of

        msg = dataclasses.replace(msg, channel_key=public_key_of(new_private_key()))
    forged = Envelope(answer.sender, answer.recipient, wire.encode(msg))
    with pytest.raises(ProtocolError, match="sealed partial scores.*does not open"):
        parties["bank"].receive([forged])
