"""What crosses the relay in joint inference (the sealed bodies inside are :mod:`.bodies`).

One batch of applicants is one exchange::

    start   centre -> bank   InferenceKey       ephemeral X25519 public key
    step 1  bank -> centre   InferenceRequest   sealed: purpose, model type, consented USCCs
    step 2  centre -> bank   InferencePartials  sealed: found mask, partial scores / direction bits

Sealing is :mod:`protocols.common.channel`, bound to the run (session), the batch, both parties
and the message kind, so the relaying coordinator sees only sizes and hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.common.party import ProtocolError

PROTOCOL = "fedcredit-inference/1"


class InferenceError(ProtocolError):
    """A party cannot accept an inference message, model or input; the message says why."""


@dataclass
class InferenceKey:
    """Centre -> bank: the centre's ephemeral X25519 public key for this batch."""

    protocol: str
    session: str
    batch: int
    public_key: bytes


@dataclass
class InferenceRequest:
    """Bank -> centre: its ephemeral public key and the sealed :class:`~protocols.inference.bodies.RequestBody`."""

    protocol: str
    session: str
    batch: int
    public_key: bytes
    sealed: bytes


@dataclass
class InferencePartials:
    """Centre -> bank: the sealed :class:`~protocols.inference.bodies.PartialsBody`."""

    protocol: str
    session: str
    batch: int
    sealed: bytes
