"""The one recipe for a sealed message between two parties: X25519, HKDF-SHA256, ChaCha20-Poly1305.

Why one recipe: PSI's round 2, joint inference's request and answer, and the CKKS secret-key
hand-over all send something only the peer may read through a relay that must see nothing but
sizes. Written by hand three times, each had to get the same details right (refuse low-order
points, never reuse a key with a nonce, bind the message to its run and direction). Like
pyca/cryptography's Fernet over its ``hazmat`` layer, this module is the safe surface; protocol
code does not touch the primitives.

How a message is sealed: both parties hold an X25519 key pair (usually ephemeral: fresh per run,
batch or message) and the peer's public key. The shared secret (refused if the peer's key is a
low-order point, i.e. the secret would be all zero) goes through HKDF-SHA256 with a *context*
that names everything the message is bound to:

* the protocol label and the session (run id, session salt);
* the sender and recipient names and both public keys (so a message cannot be reflected back to
  its sender nor accepted under a substituted key);
* the message's own fields, e.g. ``message="PsiReblinded", count=..., batch=...``.

Each message therefore gets its own key, and ChaCha20-Poly1305 runs with a fixed all-zero nonce:
safe because no key ever seals two messages (a :class:`Channel` refuses to seal the same
context twice, and callers put fresh ephemeral keys or per-message fields in the context). The
context is also the associated data. A tampered, misaddressed, replayed (another run, batch or
direction) or wrongly keyed message does not open: :class:`SealBroken`.

The recipe adds 16 bytes (the tag) to a message and costs one X25519 exchange per
:class:`Channel` plus one HKDF per message.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32  # X25519 private and public keys
TAG_BYTES = 16  # what sealing adds to a message
RECIPE = b"fedcredit/channel/v1 x25519-hkdf_sha256-chacha20poly1305"
_NONCE = bytes(12)  # safe: every key seals exactly one message

Field = str | int | bytes


class ChannelError(ValueError):
    """A channel cannot be set up, or a message cannot be sealed or opened."""


class BadPublicKey(ChannelError):
    """The peer's public key is not 32 bytes or is a low-order point (all-zero shared secret)."""


class SealBroken(ChannelError):
    """A sealed message does not open: tampered with, misaddressed, replayed or wrongly keyed."""


def new_private_key() -> bytes:
    """A fresh X25519 private key (raw 32 bytes) from the OS's CSPRNG."""
    return X25519PrivateKey.generate().private_bytes_raw()


def public_key_of(private_key: bytes) -> bytes:
    """The raw 32-byte X25519 public key of a raw private key."""
    return _private(private_key).public_key().public_bytes_raw()


def _private(raw: object) -> X25519PrivateKey:
    if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
        raise ChannelError(f"an X25519 private key is {KEY_BYTES} raw bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def _part(value: Field) -> bytes:
    """Typed, length-prefixed encoding of one context part: no two contexts encode alike."""
    if isinstance(value, bool):  # a bool is not a count
        raise ChannelError("context fields are str, int or bytes, not bool")
    if isinstance(value, str):
        tag, raw = b"s", value.encode()
    elif isinstance(value, int):
        tag, raw = b"i", str(value).encode()
    elif isinstance(value, bytes):
        tag, raw = b"b", value
    else:
        raise ChannelError(f"context fields are str, int or bytes, not {type(value).__name__}")
    return tag + len(raw).to_bytes(8, "big") + raw


class Channel:
    """Sealing to and opening from one peer, under one protocol label and session.

    ``private_key`` is this party's raw X25519 key, ``peer_public`` the peer's raw public key
    (both usually ephemeral), ``me`` and ``peer`` the two parties' names as the relay knows them.
    Raises :class:`BadPublicKey` for a peer key that is not a usable X25519 point.
    """

    def __init__(self, private_key: bytes, peer_public: object, *, protocol: str, session: str, me: str, peer: str):
        if not isinstance(peer_public, bytes):
            raise BadPublicKey(f"X25519 public key is a {type(peer_public).__name__}, expected {KEY_BYTES} bytes")
        if len(peer_public) != KEY_BYTES:
            raise BadPublicKey(f"X25519 public key has {len(peer_public)} bytes, expected {KEY_BYTES}")
        mine = _private(private_key)
        try:
            shared = mine.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:  # OpenSSL refuses an all-zero result
            shared = bytes(KEY_BYTES)
        if shared == bytes(KEY_BYTES):
            raise BadPublicKey("X25519 public key is a low-order point (all-zero shared secret)")
        self._shared = shared
        self.public_key = mine.public_key().public_bytes_raw()
        self.peer_public = peer_public
        self.protocol, self.session, self.me, self.peer = protocol, session, me, peer
        self._sealed: set[bytes] = set()

    def _context(self, outgoing: bool, fields: dict[str, Field]) -> bytes:
        """Everything the message is bound to: recipe, protocol, session, sender, recipient, keys, fields."""
        ends = [(self.me, self.public_key), (self.peer, self.peer_public)]
        (sender, sender_key), (recipient, recipient_key) = ends if outgoing else ends[::-1]
        parts: list[Field] = [RECIPE, self.protocol, self.session, sender, recipient, sender_key, recipient_key]
        for name in sorted(fields):
            parts += [name, fields[name]]
        return b"".join(_part(p) for p in parts)

    def _aead(self, context: bytes) -> ChaCha20Poly1305:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(self._shared)
        return ChaCha20Poly1305(key)

    def seal(self, plaintext: bytes, **fields: Field) -> bytes:
        """``plaintext`` sealed to the peer, bound to ``fields`` (which the peer must name again)."""
        context = self._context(True, fields)
        if context in self._sealed:
            raise ChannelError(f"{self.protocol}: a message with fields {sorted(fields)} was already sealed")
        self._sealed.add(context)
        return self._aead(context).encrypt(_NONCE, plaintext, context)

    def open(self, sealed: object, **fields: Field) -> bytes:
        """The plaintext of a message the peer sealed to this party with the same ``fields``."""
        if not isinstance(sealed, bytes) or len(sealed) < TAG_BYTES:
            raise SealBroken(f"{self.protocol}: a sealed message is bytes of at least {TAG_BYTES}")
        context = self._context(False, fields)
        try:
            return self._aead(context).decrypt(_NONCE, sealed, context)
        except InvalidTag:
            raise SealBroken(
                f"{self.protocol}: sealed message from {self.peer!r} to {self.me!r} does not open "
                "(tampered with, another run, batch or direction, or another key)"
            ) from None


__all__ = [
    "BadPublicKey",
    "Channel",
    "ChannelError",
    "KEY_BYTES",
    "SealBroken",
    "TAG_BYTES",
    "new_private_key",
    "public_key_of",
]
