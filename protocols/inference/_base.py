"""What the bank and the centre share: the persisted state, message checks, sealing, errors.

Both parties are restartable (:class:`~protocols.common.party.RestartableParty`): the state holds
keys, counters and results, the caller hands the data (model part, applicants or table) back on
restore. Between two steps the state holds at most this party's ephemeral X25519 private key and
the peer's public key; both are dropped once the batch's one exchange is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from protocols.common import wire
from protocols.common.channel import Channel, ChannelError
from protocols.common.party import Envelope, RestartableParty, open_envelope
from protocols.inference.messages import PROTOCOL, InferenceError

M = TypeVar("M")
P = TypeVar("P", bound="InferenceParty")


@dataclass
class _State:
    version: str
    role: str
    name: str
    peer: str
    session: str
    batch: int
    phase: str
    data_digest: str = ""  # bank: digest of the batch it was built on
    secret: bytes = b""  # this party's ephemeral X25519 private key, while it is needed
    peer_public: bytes = b""  # bank: the centre's public key, until the answer is opened
    status: list = field(default_factory=list)  # bank: per applicant
    scores: Any = None  # bank: probabilities (nan when not scored)
    purpose: str = ""
    queried: list = field(default_factory=list)  # centre: USCCs asked (its query log)
    found: Any = None  # centre: bool per queried USCC
    decisions: list = field(default_factory=list)  # centre: quota decision per queried USCC (quota.FRESH, ...)
    values: list = field(default_factory=list)  # centre: the answer given per queried USCC (for its book)
    model_key: str = ""  # centre: model part + split ids the batch was answered for
    consent_refused: dict = field(default_factory=dict)  # centre: its consent re-check's refusals, by reason


class InferenceParty(RestartableParty):
    """One side of one batch; ``s`` is the persisted :class:`_State`.

    ``name`` and ``peer`` are the two parties' names as the relay knows them; ``session`` is
    the run and ``batch`` the batch this exchange scores. Subclasses check their data, then
    call this constructor with their initial state fields.
    """

    state_type = _State
    state_version = "inference-state/2"
    error_type = InferenceError  # restore failures are inference errors too
    s: _State

    def __init__(self, name: str, peer: str, *, session: str, batch: int, **state: Any) -> None:
        self.name = name
        self.s = _State(self.state_version, self.role, name, peer, session, int(batch), "init", **state)

    @classmethod
    def from_state(cls: type[P], state: bytes, **data: Any) -> P:
        """Rebuild from :meth:`to_state` bytes and the party's data, given as at construction
        (the constructor's keywords after ``session`` and ``batch``)."""
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, session=s.session, batch=s.batch, **cls._identity(s), **data)
        party._restore(s)
        return party

    @classmethod
    def _identity(cls, s: _State) -> dict[str, Any]:
        """Constructor arguments kept in the state besides name, peer, session and batch."""
        return {}

    def _fail(self, what: str) -> InferenceError:
        return InferenceError(f"inference {self.role} {self.name!r} (batch {self.s.batch}, {self.s.phase}): {what}")

    def _one(self, inbox: list[Envelope], cls: type[M]) -> M:
        """The one message of type ``cls`` from the peer, for this run and batch."""
        env = self._one_from(inbox, self.s.peer, cls.__name__)
        msg: Any = open_envelope(env, cls, f"inference {self.role} {self.name!r} (batch {self.s.batch})")
        if msg.protocol != PROTOCOL or msg.session != self.s.session or msg.batch != self.s.batch:
            raise self._fail(
                f"{cls.__name__} for protocol {msg.protocol!r}, session {msg.session!r}, "
                f"batch {msg.batch!r} (wrong run or batch)"
            )
        return msg

    def _channel(self, private_key: bytes, peer_public: object) -> Channel:
        """The sealed channel to the peer for this batch, from this party's ephemeral key."""
        try:
            return Channel(
                private_key, peer_public, protocol=PROTOCOL, session=self.s.session, me=self.name, peer=self.s.peer
            )
        except ChannelError as exc:
            raise self._fail(f"peer public key refused: {exc}") from None

    def _seal(self, link: Channel, kind: str, body: object) -> bytes:
        """``body`` sealed to the peer as the ``kind`` message of this batch."""
        return link.seal(wire.encode(body), message=kind, batch=self.s.batch)

    def _open(self, link: Channel, sealed: object, kind: str, cls: type[M]) -> M:
        """The sealed ``cls`` body of the peer's ``kind`` message of this batch."""
        if not isinstance(sealed, bytes):
            raise self._fail(f"{kind}: sealed field is not bytes")
        try:
            return wire.decode(link.open(sealed, message=kind, batch=self.s.batch), cls)
        except ChannelError:
            raise self._fail(f"{kind} does not open with the agreed key (tampered or wrong peer)") from None
        except wire.WireError as exc:
            raise self._fail(f"{kind}: bad sealed body: {exc}") from None

    @property
    def finished(self) -> bool:
        return self.s.phase == "done"
