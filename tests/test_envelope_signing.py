"""The envelope signing recipe (protocols/common/signing.py): each attack is planted, then caught."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.common import signing
from protocols.common.party import Envelope
from protocols.common.signing import EnvelopeRefused, SignedEnvelope, StreamGuard

BANK, CENTRE = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
PEERS = {"bank": BANK.public_key(), "credit_centre": CENTRE.public_key()}
SESSION = signing.session_id("run1", {"bank": "aa", "credit_centre": "bb"})
CTX = {"federation": "demo", "session": SESSION, "phase": "psi"}


def _signed(payload: bytes = b"FCW1 payload", seq: int = 0, key: Ed25519PrivateKey = BANK, **kw) -> SignedEnvelope:
    env = Envelope("bank", "credit_centre", payload)
    args = {"federation": "demo", "session": SESSION, "phase": "psi", "step": "psi/1", "seq": seq, **kw}
    return signing.sign(key, env, **args)


def _verify(env: Envelope, **kw) -> SignedEnvelope:
    return signing.verify(env, me="credit_centre", peers=PEERS, **{**CTX, **kw})


def test_a_signed_envelope_verifies_and_keeps_its_payload():
    env = _verify(_signed())
    assert env.plain() == Envelope("bank", "credit_centre", b"FCW1 payload")


@pytest.mark.parametrize(
    "tamper, why",
    [
        (lambda e: dataclasses.replace(e, sender="credit_centre"), "signature does not verify"),  # forged sender
        (lambda e: dataclasses.replace(e, payload=b"FCW1 paylOad"), "signature does not verify"),  # one byte
        (lambda e: dataclasses.replace(e, seq=5), "signature does not verify"),  # renumbered
        (lambda e: dataclasses.replace(e, step="psi/2"), "signature does not verify"),  # moved to another step
        (lambda e: dataclasses.replace(e, recipient="bank_b"), "addressed to"),  # misaddressed
        (lambda e: dataclasses.replace(e, phase="hetero_lr"), "phase"),  # another phase
        (lambda e: Envelope(e.sender, e.recipient, e.payload), "not signed"),  # signature stripped
        (lambda e: dataclasses.replace(e, sender="mallory"), "no public key"),  # unknown sender
    ],
)
def test_every_tampering_is_refused_with_a_named_reason(tamper, why):
    env = _signed()
    _verify(env)  # the untampered envelope passes, so the refusal below is the tampering's
    with pytest.raises(EnvelopeRefused, match=why):
        _verify(tamper(env))


def test_a_key_the_operator_did_not_configure_is_refused():
    mallory = Ed25519PrivateKey.generate()  # e.g. a coordinator posing as the bank with its own key
    with pytest.raises(EnvelopeRefused, match="signature does not verify"):
        _verify(_signed(key=mallory))


def test_an_envelope_of_another_run_or_federation_is_refused():
    other_run = signing.session_id("run1", {"bank": "aa", "credit_centre": "cc"})  # same run id, new nonce
    with pytest.raises(EnvelopeRefused, match="signature does not verify"):
        _verify(_signed(session=other_run))
    with pytest.raises(EnvelopeRefused, match="signature does not verify"):
        _verify(_signed(federation="other"))


def test_stream_guard_refuses_replay_and_gap():
    guard = StreamGuard()
    guard.accept(_signed(seq=0))
    with pytest.raises(EnvelopeRefused, match="replayed"):
        guard.accept(_signed(seq=0))
    with pytest.raises(EnvelopeRefused, match="dropped"):
        guard.accept(_signed(seq=2))
    guard.accept(_signed(seq=1))
    assert [guard.next_out("x"), guard.next_out("x"), guard.next_out("y")] == [0, 1, 0]


def test_session_id_depends_on_run_and_every_nonce():
    base = signing.session_id("r", {"a": "1", "b": "2"})
    assert base == signing.session_id("r", {"b": "2", "a": "1"})
    assert base != signing.session_id("r2", {"a": "1", "b": "2"})
    assert base != signing.session_id("r", {"a": "1", "b": "3"})
