"""Per-field binding: every sealed or signed structure stops opening (or verifying) when exactly one
bound field changes and everything else stays valid.

A header check ("wrong run", "not addressed to me") in front of a seal proves nothing about the seal:
each row here changes the field *consistently* on both the message and the receiving party (so
every plain comparison passes) and keeps the receiver's real key, so only the cryptographic binding
can refuse it. Each structure first opens untouched (the positive control), so a row cannot pass
because the fixture was broken.

Adding a structure (e.g. the message envelopes of the untrusted-coordinator issue) is one
:class:`Structure` in :data:`STRUCTURES`: a function ``attempt(change)`` that builds a fresh valid
exchange, applies ``change`` (``None`` = nothing, else one field name) and opens or verifies it,
plus the bound field names and the error that means "does not open / does not verify".
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedcredit.data import uscc
from fedcredit.horizontal import keyshare
from fedcredit.ledger import read_records, verify
from fedcredit.ledger.demo import copy_run, write_demo_run
from protocols.common import wire
from protocols.common.channel import new_private_key, public_key_of
from protocols.common.party import Envelope
from protocols.inference import (
    BankModelPart,
    CentreModelPart,
    InferenceBank,
    InferenceCentre,
    InferenceError,
    InferencePartials,
    InferenceRequest,
)
from protocols.inference.bodies import RequestBody
from protocols.psi import PsiParty, PsiProtocolError, PsiReblinded


class NotOpened(Exception):
    """The structure under test refused the changed message (what every row requires)."""


@dataclass(frozen=True)
class Structure:
    """One sealed or signed structure: ``attempt(change, tmp_path)`` opens/verifies a fresh valid
    instance with at most one bound field changed; it returns normally when it opened and raises
    :class:`NotOpened` when the structure refused it (any other error fails the row)."""

    name: str
    fields: tuple[str, ...]
    attempt: Callable[[str | None, Path], None]


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


# -- joint inference: the sealed request (bank -> centre) and answer (centre -> bank) ------------


def _inference_pair():
    rng = np.random.default_rng(0)
    ids = uscc.generate(12, rng)
    Xb, Xc = rng.normal(size=(10, 3)), rng.normal(size=(12, 4))
    kw = dict(session="s1", batch=0)
    bank = InferenceBank(
        "b",
        "c",
        **kw,
        purpose="loan_decision",
        model=BankModelPart.from_dict({"type": "hetero_lr", "weights": [0.1, 0.2, 0.3, 0.4]}),
        ids=ids[:10],
        X=Xb,
        refusals=[None] * 10,
    )
    centre_data = dict(
        model=CentreModelPart.from_dict({"type": "hetero_lr", "weights": [0.5, -0.5, 0.25, 1.0]}),
        ids=ids[2:],
        features=Xc[2:],
        transform=lambda X: X,
    )
    centre = InferenceCentre("c", "b", **kw, **centre_data)
    bank_data = dict(model=bank.model, ids=bank.ids, X=bank.X, refusals=[None] * 10)
    return bank, centre, bank_data, centre_data


def _change_receiver(party, msg, sender: str, recipient: str, change: str | None):
    """Apply ``change`` to the receiving ``party``'s state and the message header alike."""
    if change == "session":
        party.s.session = msg.session = "another-run"
    elif change == "batch":
        party.s.batch = msg.batch = 1
    elif change == "sender":
        party.s.peer = sender = "x"
    elif change == "recipient":
        party.name = party.s.name = recipient = "y"
    elif change == "payload":
        msg.sealed = _flip_last(msg.sealed)
    return sender, recipient


def _inference_request(change: str | None, tmp: Path) -> None:
    bank, centre, _, centre_data = _inference_pair()
    key = centre.start()
    bank.start()
    (req,) = bank.receive(key)
    receiver = InferenceCentre.from_state(centre.to_state(), **centre_data)  # the centre's real key
    msg = wire.decode(req.payload, InferenceRequest)
    if change == "key":  # the bank's ephemeral key substituted (e.g. by the relay)
        msg.public_key = public_key_of(new_private_key())
    sender, recipient = _change_receiver(receiver, msg, req.sender, req.recipient, change)
    try:
        if change == "message":  # the request's sealed body presented as the other message kind
            link = receiver._channel(receiver.s.secret, msg.public_key)
            receiver._open(link, msg.sealed, "InferencePartials", RequestBody)
            return
        receiver.receive([Envelope(sender, recipient, wire.encode(msg))])
    except InferenceError as exc:
        if "does not open" in str(exc):
            raise NotOpened(str(exc)) from None
        raise


def _inference_answer(change: str | None, tmp: Path) -> None:
    bank, centre, bank_data, _ = _inference_pair()
    key = centre.start()
    bank.start()
    (req,) = bank.receive(key)
    state = bank.to_state()
    (answer,) = centre.receive([req])
    receiver = InferenceBank.from_state(state, **bank_data)
    msg = wire.decode(answer.payload, InferencePartials)
    if change == "key":  # the bank opens with another centre public key than the one it sealed to
        receiver.s.peer_public = public_key_of(new_private_key())
    sender, recipient = _change_receiver(receiver, msg, answer.sender, answer.recipient, change)
    try:
        receiver.receive([Envelope(sender, recipient, wire.encode(msg))])
    except InferenceError as exc:
        if "does not open" in str(exc):
            raise NotOpened(str(exc)) from None
        raise
    assert receiver.finished


# -- PSI round 2: the sealed double-blinded keys --------------------------------------------------


def _psi_round2(change: str | None, tmp: Path) -> None:
    ids = uscc.generate(30, np.random.default_rng(3))
    a = PsiParty("A", ids[:20], session="e", workers=1)
    b = PsiParty("B", ids[10:], session="e", workers=1)
    m1a, m1b = a.start(), b.start()
    b.handle(m1a)
    m2a = a.handle(m1b)  # A's sealed re-blinded copy of B's points, for B
    assert isinstance(m2a, PsiReblinded)
    msg = dataclasses.replace(m2a)
    if change == "session":
        b._session = msg.session = "f" * len(b._session)
    elif change == "sender":
        b.peer = msg.sender = "C"
    elif change == "recipient":
        b.role = "C"
    elif change == "key":  # B's round-2 channel keyed with another peer key than A's
        b._peer_channel = public_key_of(new_private_key())
    elif change == "payload":
        msg.sealed = _flip_last(msg.sealed)
    if change in ("session", "sender", "recipient", "key"):
        b._link = b._channel_to(b._peer_channel)  # what B derives from its (changed) view
    try:
        b.handle(msg)
    except PsiProtocolError as exc:
        if "fail authentication" in str(exc):
            raise NotOpened(str(exc)) from None
        raise
    finally:
        a.close()
        b.close()
    assert b.result().size == 10


# -- CKKS secret-key hand-over ----------------------------------------------------------------------


def _ckks_key_share(change: str | None, tmp: Path) -> None:
    b_priv = keyshare.generate_private()
    env = keyshare.seal(
        b"the-ckks-secret-context" * 4,
        run_id="r1",
        sender="bank_a",
        recipient="bank_b",
        recipient_public=keyshare.public_of(b_priv),
    )
    me, run_id = "bank_b", "r1"
    if change == "run":
        env.run_id = run_id = "r2"
    elif change == "sender":
        env.sender = "bank_x"
    elif change == "recipient":
        env.recipient = me = "bank_c"
    elif change == "key":
        env.ephemeral_public = keyshare.public_of(keyshare.generate_private())
    elif change == "nonce":
        env.nonce = _flip_last(env.nonce)
    elif change == "payload":
        env.ciphertext = _flip_last(env.ciphertext)
    try:
        got = keyshare.open_envelope(env, private_raw=b_priv, me=me, run_id=run_id)
    except keyshare.EnvelopeError as exc:
        if "does not open" in str(exc):
            raise NotOpened(str(exc)) from None
        raise
    assert got == b"the-ckks-secret-context" * 4


# -- signed logs: the coordinator's ledger and each node's egress log -------------------------------

_DEMO: dict[str, object] = {}


def _demo(tmp: Path):
    """A fresh copy (under ``tmp``) of one demo run written once per session."""
    if "run" not in _DEMO:
        _DEMO["run"] = write_demo_run(Path(tempfile.mkdtemp(prefix="fedcredit-binding-")), steps=2)
    return copy_run(_DEMO["run"], tmp / f"copy-{len(list(tmp.iterdir()))}")  # type: ignore[arg-type]


def _signed_log(which: str) -> Callable[[str | None, Path], None]:
    def attempt(change: str | None, tmp: Path) -> None:
        run = _demo(tmp)
        path = run.ledger_path if which == "ledger" else run.egress_paths["bank"]
        rec = read_records(path)[2]
        if change is not None:
            old = rec.payload_text if change == "payload" else getattr(rec, change)
            new = old.replace("1", "2", 1) if change == "payload" and "1" in old else old[:-1] + chr(ord(old[-1]) ^ 1)
            conn = sqlite3.connect(path)
            # a field every record shares is changed in every record, so that the verifier's
            # consistency checks pass and only the hash and signature can refuse it
            where = "" if change in ("log", "run_id", "writer") else " WHERE seq=2"
            conn.execute(f"UPDATE fedcredit_records SET {change}=?{where}", (new,))
            conn.commit()
            conn.close()
        rep = verify(
            run.ledger_path, public_key=run.coordinator_key.public_key(), egress=list(run.egress_paths.values())
        )
        if not rep.ok:
            raise NotOpened("; ".join(rep.errors))

    return attempt


def _signed_envelope(change: str | None, tmp: Path) -> None:
    """Issue 13's party-to-party envelope: one bound header field changed on both the envelope and
    the receiver's expectation (so only the Ed25519 signature can refuse it)."""
    import dataclasses

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocols.common import signing
    from protocols.common.party import Envelope

    bank_key = Ed25519PrivateKey.generate()
    ctx = {"federation": "fed", "session": "s1", "phase": "hetero_lr"}
    env = signing.sign(bank_key, Envelope("bank", "centre", b"masked gradient bytes"), step="hetero_lr/2", seq=3, **ctx)
    peers, me = {"bank": bank_key.public_key()}, "centre"
    if change in ("federation", "session"):
        ctx[change] += "x"
    elif change == "phase":
        ctx["phase"], env = "align", dataclasses.replace(env, phase="align")
    elif change == "step":
        env = dataclasses.replace(env, step="hetero_lr/3")
    elif change == "seq":
        env = dataclasses.replace(env, seq=4)
    elif change == "sender":  # the receiver knows the claimed sender, under the same key
        env, peers["bank2"] = dataclasses.replace(env, sender="bank2"), bank_key.public_key()
    elif change == "recipient":
        env, me = dataclasses.replace(env, recipient="auditor"), "auditor"
    elif change == "payload":
        env = dataclasses.replace(env, payload=_flip_last(env.payload))
    elif change == "key":  # signed by a key the receiver's operator did not configure
        env = signing.sign(Ed25519PrivateKey.generate(), env.plain(), step=env.step, seq=env.seq, **ctx)
    try:
        signing.verify(env, me=me, peers=peers, **ctx)
    except signing.EnvelopeRefused as exc:
        raise NotOpened(str(exc)) from None


STRUCTURES = [
    Structure(
        "inference-request",
        ("session", "batch", "sender", "recipient", "key", "message", "payload"),
        _inference_request,
    ),
    Structure("inference-answer", ("session", "batch", "sender", "recipient", "key", "payload"), _inference_answer),
    Structure("psi-round2", ("session", "sender", "recipient", "key", "payload"), _psi_round2),
    Structure("ckks-key-share", ("run", "sender", "recipient", "key", "nonce", "payload"), _ckks_key_share),
    Structure(
        "signed-envelope",
        ("federation", "session", "phase", "step", "sender", "recipient", "seq", "key", "payload"),
        _signed_envelope,
    ),
    Structure("ledger-record", ("log", "run_id", "kind", "ts", "writer", "payload"), _signed_log("ledger")),
    Structure("node-log-record", ("log", "run_id", "kind", "ts", "writer", "payload"), _signed_log("egress")),
]
ROWS = [pytest.param(s, f, id=f"{s.name}-{f}") for s in STRUCTURES for f in s.fields]


@pytest.mark.parametrize("structure,field", ROWS)
def test_one_bound_field_changed_does_not_open(structure: Structure, field: str, tmp_path: Path) -> None:
    structure.attempt(None, tmp_path)  # positive control: the untouched exchange opens / verifies
    with pytest.raises(NotOpened):
        structure.attempt(field, tmp_path)
