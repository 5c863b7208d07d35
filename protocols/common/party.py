"""The shape every multi-party protocol takes: parties exchanging envelopes through a relay.

A protocol is written once as :class:`Party` objects. Each step, the relay (the coordinator in
production, :func:`run_local` in tests) hands every party the envelopes addressed to it and
collects what it wants to send. The relay only ever sees ``Envelope.payload`` bytes, which are
:mod:`protocols.common.wire` encodings of the protocol's dataclass messages; it never needs to know the
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
from typing import Any, ClassVar, Protocol, TypeVar

from protocols.common import wire


class ProtocolError(RuntimeError):
    """A party received something it cannot accept at this step; the message says what."""


M = TypeVar("M")


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
    role: ClassVar[str] = "party"  # what error messages call this participant
    error_type: ClassVar[type[ProtocolError]] = ProtocolError  # a protocol may name its own subclass

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

    def _fail(self, what: str) -> ProtocolError:
        """A protocol error naming this party: ``raise self._fail("...")``."""
        return self.error_type(f"{self.role} {self.name!r}: {what}")

    def _one_from(self, inbox: list[Envelope], peer: str, what: str = "message") -> Envelope:
        """The single envelope a two-party step expects, from ``peer``.

        Nothing, two envelopes, or one from anyone else (a third party, or one the relay made
        up) is refused: the relay decides what arrives, so every party checks it.
        """
        if len(inbox) != 1 or inbox[0].sender != peer:
            senders = [e.sender for e in inbox]
            raise self._fail(f"expected exactly one {what} from {peer!r}, got {len(inbox)} from {senders}")
        return inbox[0]


def open_envelope(env: Envelope, cls: type[M], where: str) -> M:
    """The message of type ``cls`` in ``env``, or a ProtocolError naming ``where`` and the sender.

    The one place a party turns received bytes into a message: :mod:`protocols.common.wire`
    refuses anything that is not exactly ``cls`` (no pickle, no foreign types).
    """
    try:
        return wire.decode(env.payload, cls)
    except wire.WireError as exc:
        raise ProtocolError(f"{where}: message from {env.sender!r}: {exc}") from None


class PartyState(Protocol):
    """What every persisted party state carries, so one restore sequence can check it."""

    version: str
    role: str
    name: str
    data_digest: str


class RestartableParty(Party):
    """A party that survives being reduced to bytes and rebuilt between any two steps.

    The contract, in the spirit of Flower's ``Strategy`` hooks: a subclass declares its
    persisted state type and version, keeps everything that must survive a step in ``self.s``
    (a wire-encodable dataclass with at least the :class:`PartyState` fields), and implements
    :meth:`from_state`. The base class provides the one restore sequence: :meth:`peek_state`
    decodes and checks version and role (``from_state`` reads name, peer and settings from it to
    construct the party, which checks the data), then :meth:`_restore` checks that the caller
    handed back the same data (digest), adopts the state, and :meth:`_after_restore` rebuilds
    what is derived from it (keys, tables). Data matrices are never in the state: they stay in
    the node's files and are handed back::

        @classmethod
        def from_state(cls, state, X):
            s = cls.peek_state(state)
            party = cls(s.name, s.peer, X, Config(**s.config))
            party._restore(s)
            return party

    ``history`` and ``model`` are part of the contract so a node can report progress and
    release a model part for any protocol without knowing which one it runs.
    """

    state_type: ClassVar[type] = object  # the wire dataclass persisted by to_state
    state_version: ClassVar[str] = ""

    s: Any  # the persisted state, an instance of ``state_type``

    def to_state(self) -> bytes:
        """Everything needed to continue; node-local (may hold private keys and masks)."""
        return wire.encode(self.s)

    @classmethod
    @abstractmethod
    def from_state(cls, state: bytes, *args: Any, **kwargs: Any) -> RestartableParty:
        """Rebuild a party from :meth:`to_state` bytes and the node's own data.

        Implementations construct the party from the data (which checks it), then call
        :meth:`_restore`.
        """

    def resume_point(self) -> int | None:
        """Epochs (or trees) completed when this party sits at a boundary it can resume from, else None.

        A boundary is a state in which everything this party sent since is re-derivable from the
        state alone (:meth:`resume`), so a checkpoint of the state there lets a run continue after
        its coordinator was lost. Protocols without such points keep the default.
        """
        return None

    def resume(self) -> list[Envelope]:
        """The messages this party sent right after its :meth:`resume_point` checkpoint, made again
        from the restored state (fresh encryption randomness, same values)."""
        raise self._fail("this protocol cannot resume from a checkpoint")

    @property
    def history(self) -> list[dict]:
        """Per-epoch (or per-tree) progress records this party may publish; empty by default."""
        return [dict(h) for h in getattr(self.s, "history", [])]

    @property
    def model(self) -> Any:
        """This party's part of the trained model; protocols that train nothing raise."""
        raise ProtocolError(f"{self.role} {self.name!r} produces no model")

    @classmethod
    def peek_state(cls, state: bytes) -> Any:
        """The persisted state, decoded and checked to be this role's and version's.

        ``from_state`` reads what it constructs the party with (name, peer, settings) from it,
        then hands it to :meth:`_restore` (which does not decode again).
        """
        try:
            s: Any = wire.decode(state, cls.state_type)
        except wire.WireError as exc:
            raise cls.error_type(f"{cls.role} state cannot be restored: {exc}") from None
        if s.version != cls.state_version or s.role != cls.role:
            raise cls.error_type(f"state is for {s.role!r} ({s.version}), not a {cls.role} party ({cls.state_version})")
        return s

    def _restore(self, s: Any) -> None:
        """Adopt ``s`` (what :meth:`peek_state` returned) as ``self.s`` once it is known to
        belong to the data this party was just built with: the constructor put that data's
        digest in the fresh ``self.s``, so it is compared, not computed again."""
        if s.data_digest != self.s.data_digest:
            raise self.error_type(
                f"{self.role} {s.name!r}: the data given to from_state is not the data this "
                "party was built with (digest mismatch)"
            )
        self.s = s
        self._after_restore()

    def _after_restore(self) -> None:
        """Hook: rebuild what derives from ``self.s`` (array dtypes, keys, builders)."""


def data_digest(*arrays: Any) -> str:
    """SHA-256 over arrays' dtype, shape and bytes (None allowed): binds a state to its data."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
