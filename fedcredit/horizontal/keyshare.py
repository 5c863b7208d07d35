"""Handing the CKKS secret key from the generating bank to the other banks via the coordinator.

Every bank makes an X25519 key pair at setup and publishes the public half. The key-generating
bank seals its serialised secret context once per recipient, ECIES-style, with the one sealed
channel recipe (:mod:`protocols.common.channel`: X25519, HKDF-SHA256, ChaCha20-Poly1305): a fresh
ephemeral X25519 key per envelope, ECDH with the recipient's public key, bound to the run id,
sender, recipient, both public keys and the envelope's random ``nonce``. The coordinator relays
the sealed envelopes and learns only their sizes; it holds no key that opens them.

Limitation (written down in docs/protocols/horizontal.md): the banks' X25519 keys are not
certified, so an actively malicious coordinator could substitute its own public key. The
threat model is a semi-honest coordinator; deployments that need more bind these keys to the
SuperNode authentication keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from protocols.common.channel import BadPublicKey, Channel, ChannelError, new_private_key, public_key_of

_PROTOCOL = "fedcredit/horizontal/ckks-key-envelope/v1"
_MESSAGE = "ckks-secret-key"


class EnvelopeError(ValueError):
    """An envelope could not be opened: wrong recipient, tampered with, or another run's."""


@dataclass
class Envelope:
    """A sealed secret for one recipient (a wire dataclass).

    ``nonce`` is 12 random bytes bound into the sealing context (each envelope is also sealed
    under its own ephemeral key, so no key ever seals two messages).
    """

    run_id: str
    sender: str
    recipient: str
    ephemeral_public: bytes
    nonce: bytes
    ciphertext: bytes


def generate_private() -> bytes:
    """A fresh X25519 private key (raw 32 bytes)."""
    return new_private_key()


def public_of(private_raw: bytes) -> bytes:
    return public_key_of(private_raw)


def seal(secret: bytes, *, run_id: str, sender: str, recipient: str, recipient_public: bytes) -> Envelope:
    """Encrypt ``secret`` so that only the holder of ``recipient_public``'s private key opens it."""
    try:
        link = Channel(
            new_private_key(), recipient_public, protocol=_PROTOCOL, session=run_id, me=sender, peer=recipient
        )
    except BadPublicKey as exc:
        raise EnvelopeError(f"{recipient}: invalid X25519 public key ({exc})") from None
    nonce = os.urandom(12)
    return Envelope(
        run_id=run_id,
        sender=sender,
        recipient=recipient,
        ephemeral_public=link.public_key,
        nonce=nonce,
        ciphertext=link.seal(secret, message=_MESSAGE, nonce=nonce),
    )


def open_envelope(env: Envelope, *, private_raw: bytes, me: str, run_id: str) -> bytes:
    """Decrypt an envelope addressed to ``me`` in run ``run_id``; EnvelopeError otherwise."""
    if env.recipient != me:
        raise EnvelopeError(f"envelope is addressed to {env.recipient!r}, not to {me!r}")
    if env.run_id != run_id:
        raise EnvelopeError(f"envelope belongs to run {env.run_id!r}, this is run {run_id!r}")
    try:
        link = Channel(
            private_raw, env.ephemeral_public, protocol=_PROTOCOL, session=env.run_id, me=me, peer=env.sender
        )
        return link.open(env.ciphertext, message=_MESSAGE, nonce=env.nonce)
    except ChannelError:
        raise EnvelopeError(
            f"envelope from {env.sender!r} does not open with {me!r}'s key (tampered with, or sealed to another key)"
        ) from None
