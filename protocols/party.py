"""The shape every multi-party protocol takes: parties exchanging envelopes through a relay.

A protocol is written once as :class:`Party` objects. Each step, the relay (the coordinator in
production, :func:`run_local` in tests) hands every party the envelopes addressed to it and
collects what it wants to send. The relay only ever sees ``Envelope.payload`` bytes, which are
:mod:`protocols.wire` encodings of the protocol's dataclass messages; it never needs to know the
protocol, so the Flower coordinator is one generic loop for PSI, hetero-LR and SecureBoost.

Parties are also *restartable*: between steps a party is reduced to ``to_state()`` bytes and
rebuilt with ``from_state``. Flower keeps per-node state only in ``context.state`` and may run a
node's consecutive messages in different processes, so nothing may live in Python objects across
steps. Secrets in the state (private keys, masks) never leave the node: ``context.state`` is
node-local.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols import wire


class ProtocolError(RuntimeError):
    """A party received something it cannot accept at this step; the message says what."""


@dataclass(frozen=True)
class Envelope:
    """One payload from one party to another; ``payload`` is a wire-encoded message."""

    sender: str
    recipient: str
    payload: bytes

    @property
    def kind(self) -> str:
        return wire.message_type(self.payload)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def size(self) -> int:
        return len(self.payload)

    def describe(self) -> dict:
        """What the ledger records about a payload: never the payload itself."""
        return {
            "sender": self.sender,
            "recipient": self.recipient,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
        }


class Party(ABC):
    """A protocol participant. Subclasses implement :meth:`start` and :meth:`receive`."""

    name: str

    @abstractmethod
    def start(self) -> list[Envelope]:
        """First step: envelopes to send before anything was received (may be empty)."""

    @abstractmethod
    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        """Consume this step's inbox, return envelopes for the next step."""

    @property
    @abstractmethod
    def finished(self) -> bool:
        """True once the party has nothing more to do in this protocol."""

    def send(self, recipient: str, message: object) -> Envelope:
        return Envelope(self.name, recipient, wire.encode(message))


@dataclass
class Transcript:
    """Everything that crossed a party boundary in a local run, step by step (for tests)."""

    steps: list[list[Envelope]] = field(default_factory=list)

    def sent_by(self, party: str) -> list[Envelope]:
        return [e for step in self.steps for e in step if e.sender == party]


def run_local(
    parties: dict[str, Party], *, max_steps: int = 100_000, restart: Callable[[str, Party], Party] | None = None
) -> Transcript:
    """Drive ``parties`` exactly as the coordinator does, in one process.

    ``restart(name, party)`` (optional) is called before every step, e.g. to round-trip a
    party through ``to_state``/``from_state`` and prove that nothing survives in memory.
    """
    transcript = Transcript()
    outgoing = [env for p in parties.values() for env in p.start()]
    steps = 0
    while outgoing:
        steps += 1
        if steps > max_steps:
            raise ProtocolError(f"protocol did not finish within {max_steps} steps")
        transcript.steps.append(outgoing)
        inboxes: dict[str, list[Envelope]] = {}
        for env in outgoing:
            if env.recipient not in parties:
                raise ProtocolError(f"{env.sender} addressed unknown party {env.recipient!r}")
            inboxes.setdefault(env.recipient, []).append(env)
        outgoing = []
        for name, inbox in inboxes.items():
            party = parties[name]
            if restart is not None:
                party = parties[name] = restart(name, party)
            outgoing.extend(party.receive(inbox))
    unfinished = [n for n, p in parties.items() if not p.finished]
    if unfinished:
        raise ProtocolError(f"protocol stalled: {unfinished} not finished and no messages in flight")
    return transcript
