"""Handing the CKKS secret key from the generating bank to the other banks via the coordinator.

Every bank makes an X25519 key pair at setup and publishes the public half. The key-generating
bank seals its serialised secret context once per recipient, ECIES-style: a fresh ephemeral
X25519 key, ECDH with the recipient's public key, HKDF-SHA256 to a 256-bit key, AES-256-GCM with
the run id, sender, recipient and both public keys as associated data. The coordinator relays
the sealed envelopes and learns only their sizes; it holds no key that opens them.

Limitation (written down in docs/protocols/horizontal.md): the banks' X25519 keys are not
certified, so an actively malicious coordinator could substitute its own public key. The
threat model is a semi-honest coordinator; deployments that need more bind these keys to the
SuperNode authentication keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"fedcredit/horizontal/ckks-key-envelope/v1"


class EnvelopeError(ValueError):
    """An envelope could not be opened: wrong recipient, tampered with, or another run's."""


@dataclass
class Envelope:
    """A sealed secret for one recipient (a wire dataclass)."""

    run_id: str
    sender: str
    recipient: str
    ephemeral_public: bytes
    nonce: bytes
    ciphertext: bytes


def generate_private() -> bytes:
    """A fresh X25519 private key (raw 32 bytes)."""
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def public_of(private_raw: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private_raw)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _aad(run_id: str, sender: str, recipient: str, eph_pub: bytes, rcpt_pub: bytes) -> bytes:
    parts = [run_id.encode(), sender.encode(), recipient.encode(), eph_pub, rcpt_pub]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _derive(shared: bytes, aad: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + aad).derive(shared)


def seal(secret: bytes, *, run_id: str, sender: str, recipient: str, recipient_public: bytes) -> Envelope:
    """Encrypt ``secret`` so that only the holder of ``recipient_public``'s private key opens it."""
    try:
        rcpt = X25519PublicKey.from_public_bytes(recipient_public)
    except ValueError as exc:
        raise EnvelopeError(f"{recipient}: invalid X25519 public key ({exc})") from None
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    aad = _aad(run_id, sender, recipient, eph_pub, recipient_public)
    key = _derive(eph.exchange(rcpt), aad)
    nonce = os.urandom(12)
    return Envelope(
        run_id=run_id,
        sender=sender,
        recipient=recipient,
        ephemeral_public=eph_pub,
        nonce=nonce,
        ciphertext=AESGCM(key).encrypt(nonce, secret, aad),
    )


def open_envelope(env: Envelope, *, private_raw: bytes, me: str, run_id: str) -> bytes:
    """Decrypt an envelope addressed to ``me`` in run ``run_id``; EnvelopeError otherwise."""
    if env.recipient != me:
        raise EnvelopeError(f"envelope is addressed to {env.recipient!r}, not to {me!r}")
    if env.run_id != run_id:
        raise EnvelopeError(f"envelope belongs to run {env.run_id!r}, this is run {run_id!r}")
    priv = X25519PrivateKey.from_private_bytes(private_raw)
    my_pub = public_of(private_raw)
    aad = _aad(env.run_id, env.sender, env.recipient, env.ephemeral_public, my_pub)
    try:
        key = _derive(priv.exchange(X25519PublicKey.from_public_bytes(env.ephemeral_public)), aad)
        return AESGCM(key).decrypt(env.nonce, env.ciphertext, aad)
    except (InvalidTag, ValueError):
        raise EnvelopeError(
            f"envelope from {env.sender!r} does not open with {me!r}'s key (tampered with, or sealed to another key)"
        ) from None
