"""The one recipe for an authenticated party-to-party envelope: Ed25519 over a canonical header.

Why: the coordinator relays every envelope and is not trusted beyond availability. Without a
signature it decides who said what: it could pose as the bank to the centre, substitute a
Paillier or sealing key carried in a payload, replay a message from an earlier step or run,
alter, drop or inject one. With this recipe every envelope carries the sender node's Ed25519
signature over

    recipe | federation | session | phase | step | sender | recipient | seq | SHA-256(payload)

(typed, length-prefixed parts, as :mod:`protocols.common.channel` builds its contexts, so no two
headers encode alike). The recipient checks it against the sender's public key that *its own
operator* configured (never a key learned from the coordinator), and a :class:`StreamGuard`
checks the per-stream sequence number, so:

* forged sender, altered byte, substituted key inside a payload -> the signature fails;
* a message of another run -> the session (run id and every party's fresh hello nonce) differs;
* a replayed or reordered message of this run -> its sequence number was already used;
* a dropped message -> the next message of that stream skips a number (and ``fedcredit ledger
  verify`` finds the sender's egress record without the recipient's ingress record);
* an injected message -> no key to sign it.

Keys carried *inside* payloads (Paillier public keys, PSI and inference X25519 keys, the CKKS
context) are thereby bound to their owner's node key: they arrive in an envelope signed by it.

Cost: one Ed25519 signature per envelope sent and one verification per envelope received
(tens of microseconds) plus one SHA-256 pass over the payload; never per row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.common.party import Envelope

RECIPE = b"fedcredit/envelope/v1 ed25519"
SIGNATURE_BYTES = 64


class EnvelopeRefused(ValueError):
    """An envelope failed authentication or sequencing; the message names sender, step and why."""


@dataclass(frozen=True)
class SignedEnvelope(Envelope):
    """An :class:`Envelope` with what authenticates it: the phase and step it was sent at, its
    per-stream sequence number and the sender's signature. The relay forwards it unchanged."""

    phase: str = ""
    step: str = ""
    seq: int = -1
    signature: bytes = b""

    def describe(self) -> dict:
        return {**super().describe(), "seq": self.seq}

    def plain(self) -> Envelope:
        return Envelope(self.sender, self.recipient, self.payload)


def _part(value: str | int | bytes) -> bytes:
    if isinstance(value, bool):
        raise TypeError("header parts are str, int or bytes, not bool")
    if isinstance(value, str):
        tag, raw = b"s", value.encode()
    elif isinstance(value, int):
        tag, raw = b"i", str(value).encode()
    else:
        tag, raw = b"b", bytes(value)
    return tag + len(raw).to_bytes(8, "big") + raw


def header(
    *, federation: str, session: str, phase: str, step: str, sender: str, recipient: str, seq: int, payload: bytes
) -> bytes:
    """The canonical bytes a signature covers (the payload enters as its SHA-256)."""
    parts: list[str | int | bytes] = [
        RECIPE,
        federation,
        session,
        phase,
        step,
        sender,
        recipient,
        seq,
        hashlib.sha256(payload).digest(),
    ]
    return b"".join(_part(p) for p in parts)


def session_id(run_id: str, nonces: dict[str, str]) -> str:
    """A run's session: the coordinator's run id and every party's fresh hello nonce.

    Each node checks its own nonce is in it, so no envelope of an earlier run (whose session
    held another nonce of this node) can be accepted, whatever run id the coordinator reuses.
    """
    h = hashlib.sha256(_part(b"fedcredit/session/v1") + _part(run_id))
    for name in sorted(nonces):
        h.update(_part(name) + _part(nonces[name]))
    return h.hexdigest()


def sign(
    key: Ed25519PrivateKey, env: Envelope, *, federation: str, session: str, phase: str, step: str, seq: int
) -> SignedEnvelope:
    """``env`` signed by its sender's node key."""
    h = header(
        federation=federation,
        session=session,
        phase=phase,
        step=step,
        sender=env.sender,
        recipient=env.recipient,
        seq=seq,
        payload=env.payload,
    )
    return SignedEnvelope(env.sender, env.recipient, env.payload, phase, step, seq, key.sign(h))


def verify(
    env: Envelope, *, me: str, peers: dict[str, Ed25519PublicKey], federation: str, session: str, phase: str
) -> SignedEnvelope:
    """``env`` if it is addressed to ``me`` and signed for this federation, session and phase by
    the key this node's operator configured for its claimed sender; else :class:`EnvelopeRefused`."""
    if not isinstance(env, SignedEnvelope) or len(env.signature) != SIGNATURE_BYTES:
        raise EnvelopeRefused(f"envelope claiming to be from {env.sender!r} is not signed")
    where = f"envelope from {env.sender!r} (sent at step {env.step!r}, seq {env.seq})"
    if env.recipient != me:
        raise EnvelopeRefused(f"{where} is addressed to {env.recipient!r}, not to {me!r}")
    if env.phase != phase:
        raise EnvelopeRefused(f"{where} belongs to phase {env.phase!r}, this step is in phase {phase!r}")
    pub = peers.get(env.sender)
    if pub is None:
        raise EnvelopeRefused(f"{where}: no public key configured for {env.sender!r} (not a known peer)")
    h = header(
        federation=federation,
        session=session,
        phase=env.phase,
        step=env.step,
        sender=env.sender,
        recipient=env.recipient,
        seq=env.seq,
        payload=env.payload,
    )
    try:
        pub.verify(env.signature, h)
    except InvalidSignature:
        raise EnvelopeRefused(
            f"{where}: signature does not verify with {env.sender!r}'s configured key "
            "(forged sender, altered payload, substituted key, or another run/federation)"
        ) from None
    return env


@dataclass
class StreamGuard:
    """Per-stream sequence numbers: what this node sent to each peer, and expects from each."""

    sent: dict[str, int] = field(default_factory=dict)  # peer -> next seq to send
    expected: dict[str, int] = field(default_factory=dict)  # peer -> next seq to accept

    def next_out(self, peer: str) -> int:
        n = self.sent.get(peer, 0)
        self.sent[peer] = n + 1
        return n

    def accept(self, env: SignedEnvelope) -> None:
        """Refuse a replayed (seq already seen) or out-of-order / after-a-drop (seq skipped) envelope."""
        want = self.expected.get(env.sender, 0)
        if env.seq < want:
            raise EnvelopeRefused(
                f"envelope from {env.sender!r} (step {env.step!r}) has seq {env.seq}, already received: replayed"
            )
        if env.seq > want:
            raise EnvelopeRefused(
                f"envelope from {env.sender!r} (step {env.step!r}) has seq {env.seq}, expected {want}: "
                f"{env.seq - want} earlier message(s) of this stream were dropped or reordered"
            )
        self.expected[env.sender] = want + 1


__all__ = [
    "EnvelopeRefused",
    "SIGNATURE_BYTES",
    "SignedEnvelope",
    "StreamGuard",
    "header",
    "session_id",
    "sign",
    "verify",
]
