"""Messages of the consent exchange (three, one per step)::

    start    centre -> bank    ConsentKey      the centre's ephemeral X25519 public key
    step 1   bank -> centre    ConsentTokens   the bank's ephemeral key + sealed TokenBundle
    step 2   centre -> bank    ConsentVerdict  sealed VerdictBody: accepted or not, per position

Positions are the common order both parties hold after PSI, so neither message names an id in
the clear. Sealing is :mod:`protocols.common.channel`, bound to the run (session), both parties,
both keys and the message kind; the relay sees sizes only. Why seal at all, when PSI already
told both parties the intersection: the *coordinator* must not learn the intersection's ids nor
who authorised what.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.common.party import ProtocolError

PROTOCOL = "fedcredit-consent/1"


class ConsentProtocolError(ProtocolError):
    """A party cannot accept a consent-exchange message; the message says why."""


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
    sealed: bytes  # a wire-encoded TokenBundle


@dataclass
class TokenBundle:
    """One token per common position, newline-separated (compact JWS has no newline); an empty
    line where the bank holds no token."""

    count: int
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
