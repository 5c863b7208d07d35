"""Messages of the consent exchange::

    start    centre -> bank    ConsentKey      the centre's ephemeral X25519 public key
    step 1   bank -> centre    ConsentTokens   the bank's ephemeral key + sealed TokenKeys: each
                                               position's token *key* (its 86-character signature
                                               segment), fixed width
    step 2   centre -> bank    ConsentRequest  sealed RequestBody: the positions whose key the
                                               centre has never verified (first sightings only)
             (or, when it knows every key, directly ConsentVerdict)
    step 3   bank -> centre    ConsentFull     sealed TokenBundle: those positions' whole tokens
    step 4   centre -> bank    ConsentVerdict  sealed VerdictBody: accepted or not, per position

Why keys first: the centre verifies a token's signature once and keeps the verified claims under
that signature (fedcredit.consent.check); on later runs it needs nothing but the key to find
them, so a run over 1M known tokens moves 86 MB instead of ~500 MB of tokens and the centre never
scans a bundle. A key the centre does not know costs one more round trip, for those positions
only. A key is worth no more than the token: the centre judges a known key on the claims it
verified when it filed it, and a whole token on its own signature.

Positions are the common order both parties hold after PSI, so no message names an id in the
clear. Sealing is :mod:`protocols.common.channel`, bound to the run (session), both parties,
both keys and the message kind; the relay sees sizes only. Why seal at all, when PSI already
told both parties the intersection: the *coordinator* must not learn the intersection's ids nor
who authorised what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protocols.common.party import ProtocolError

PROTOCOL = "fedcredit-consent/2"
KEY_CHARS = 86  # base64url (unpadded) of a 64-byte Ed25519 signature: a compact JWS's last segment
# The key of a token without a well-formed signature segment: never a stored key (not base64url),
# so the centre asks for the whole token and names its defect. No token at all: all zero bytes.
UNKNOWN_KEY = b"." * KEY_CHARS


class ConsentProtocolError(ProtocolError):
    """A party cannot accept a consent-exchange message; the message says why."""


def token_key(token: bytes) -> bytes:
    """The key the bank sends for ``token``: its signature segment, or UNKNOWN_KEY, or b''."""
    if not token:
        return b""
    if len(token) > KEY_CHARS + 1 and token[-KEY_CHARS - 1] == ord(".") and b"." not in token[-KEY_CHARS:]:
        return token[-KEY_CHARS:]
    return UNKNOWN_KEY


def token_keys(tokens: Sequence[bytes]) -> bytes:
    """Each token's last KEY_CHARS bytes, zero-padded to KEY_CHARS, concatenated: the TokenKeys
    body (no token: all zeros). One slice per token, the rest numpy. A malformed token's tail is
    simply a key the centre does not know, so it asks for the whole token and names its defect
    (:func:`token_key` gives the same verdict per token, for a caller holding one)."""
    k = KEY_CHARS
    tails = [t[-k:] for t in tokens]
    joined = b"".join(tails)
    if len(joined) == k * len(tails):  # no tail is longer than k, so every one is exactly k: done
        return joined
    return np.array(tails or [b""], dtype=f"S{k}")[: len(tokens)].tobytes()  # zero-pad the short ones


@dataclass
class ConsentKey:
    protocol: str
    session: str
    count: int  # positions the centre expects a token for
    public_key: bytes


@dataclass
class ConsentTokens:
    protocol: str
    session: str
    count: int
    public_key: bytes
    sealed: bytes  # a wire-encoded TokenKeys


@dataclass
class TokenKeys:
    """``count`` keys of KEY_CHARS bytes each, concatenated (zero bytes where the bank holds no
    token)."""

    count: int
    keys: bytes


@dataclass
class ConsentRequest:
    protocol: str
    session: str
    count: int
    sealed: bytes  # a wire-encoded RequestBody


@dataclass
class RequestBody:
    count: int
    positions: np.ndarray  # int64, strictly increasing: whose whole token the centre needs


@dataclass
class ConsentFull:
    protocol: str
    session: str
    count: int
    sealed: bytes  # a wire-encoded TokenBundle


@dataclass
class TokenBundle:
    """The requested positions' tokens, in request order, newline-separated (a compact JWS has no
    newline)."""

    count: int  # how many tokens (= requested positions)
    tokens: bytes


@dataclass
class ConsentVerdict:
    protocol: str
    session: str
    count: int
    sealed: bytes  # a wire-encoded VerdictBody


@dataclass
class VerdictBody:
    count: int
    accepted: np.ndarray  # bool per common position
