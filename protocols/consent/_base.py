"""What both roles share: the persisted state, message checks and sealing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from protocols.common import wire
from protocols.common.channel import Channel, ChannelError
from protocols.common.party import Envelope, Party, open_envelope
from protocols.consent.messages import PROTOCOL, ConsentProtocolError

M = TypeVar("M")


@dataclass
class ConsentState:
    """Between steps: this party's ephemeral key and the peer's, until the exchange is done."""

    role: str
    name: str
    peer: str
    session: str
    count: int
    secret: bytes = b""
    peer_public: bytes = b""
    keys: bytes = b""  # centre, between steps 1 and 3: the keys the bank sent
    asked: Any = None  # centre, between steps 1 and 3: the positions it asked whole tokens for
    accepted: Any = None  # bool array once known
    done: bool = False


class ConsentParty(Party):
    error_type = ConsentProtocolError
    s: ConsentState

    def __init__(self, s: ConsentState):
        self.name = s.name
        self.s = s

    @property
    def finished(self) -> bool:
        return self.s.done

    def to_state(self) -> bytes:
        return wire.encode(self.s)

    @staticmethod
    def peek(state: bytes) -> ConsentState:
        try:
            return wire.decode(state, ConsentState)
        except wire.WireError as exc:
            raise ConsentProtocolError(f"consent state cannot be restored: {exc}") from None

    def _one(self, inbox: list[Envelope], cls: type[M]) -> M:
        env = self._one_from(inbox, self.s.peer, cls.__name__)
        msg: Any = open_envelope(env, cls, f"consent {self.role} {self.name!r}")
        if msg.protocol != PROTOCOL or msg.session != self.s.session:
            raise self._fail(f"{cls.__name__} is for {msg.protocol} session {msg.session!r}, not this run")
        if msg.count != self.s.count:
            raise self._fail(f"{cls.__name__} covers {msg.count} positions, the intersection has {self.s.count}")
        return msg

    def _channel(self, secret: bytes, peer_public: object) -> Channel:
        try:
            return Channel(
                secret, peer_public, protocol=PROTOCOL, session=self.s.session, me=self.name, peer=self.s.peer
            )
        except ChannelError as exc:
            raise self._fail(f"cannot set up the sealed channel: {exc}") from None

    def _open(self, link: Channel, sealed: bytes, kind: str, cls: type[M]) -> M:
        try:
            return wire.decode(link.open(sealed, message=kind, count=self.s.count), cls)
        except (ChannelError, wire.WireError) as exc:
            raise self._fail(f"{kind} does not open: {exc}") from None
