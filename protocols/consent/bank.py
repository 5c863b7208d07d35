"""The bank's side: send the intersection's token keys sealed to the centre, the whole tokens it
asks for, and learn which it accepts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protocols.common import wire
from protocols.common.channel import Channel, new_private_key
from protocols.common.party import Envelope
from protocols.consent._base import ConsentParty, ConsentState
from protocols.consent.messages import (
    PROTOCOL,
    ConsentFull,
    ConsentKey,
    ConsentRequest,
    ConsentTokens,
    ConsentVerdict,
    RequestBody,
    TokenBundle,
    TokenKeys,
    VerdictBody,
    token_keys,
)


class TokenSender(ConsentParty):
    """``tokens[i]`` is the bank's token for common position ``i`` (``b""`` if it holds none).

    The tokens are handed back on restore (they live in the bank's files, not in the state)."""

    role = "consent token sender"

    def __init__(self, name: str, peer: str, session: str, tokens: Sequence[bytes], s: ConsentState | None = None):
        super().__init__(s or ConsentState(self.role, name, peer, session, len(tokens)))
        if len(tokens) != self.s.count:
            raise self._fail(f"{len(tokens)} tokens for {self.s.count} positions")
        self.tokens = tokens

    @classmethod
    def from_state(cls, state: bytes, tokens: Sequence[bytes]) -> TokenSender:
        s = cls.peek(state)
        return cls(s.name, s.peer, s.session, tokens, s)

    def start(self) -> list[Envelope]:
        return []

    def _link(self) -> Channel:
        return self._channel(self.s.secret, self.s.peer_public)

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if not self.s.secret:
            key = self._one(inbox, ConsentKey)
            secret = new_private_key()
            link = self._channel(secret, key.public_key)
            keys = token_keys(self.tokens)
            body = wire.encode(TokenKeys(self.s.count, keys))
            sealed = link.seal(body, message="ConsentTokens", count=self.s.count)
            self.s.secret, self.s.peer_public = secret, key.public_key
            return [
                self.send(self.s.peer, ConsentTokens(PROTOCOL, self.s.session, self.s.count, link.public_key, sealed))
            ]
        kind = inbox[0].kind if len(inbox) == 1 else ""
        if kind == ConsentRequest.__name__:
            req = self._one(inbox, ConsentRequest)
            asked = self._open(self._link(), req.sealed, "ConsentRequest", RequestBody)
            pos = np.asarray(asked.positions)
            if (
                asked.count != self.s.count
                or pos.dtype != np.int64
                or pos.ndim != 1
                or (pos.size and (pos[0] < 0 or pos[-1] >= self.s.count or np.any(np.diff(pos) <= 0)))
            ):
                raise self._fail("ConsentRequest names positions outside the intersection or out of order")
            tokens = [self.tokens[int(i)] for i in pos]
            if any(b"\n" in t for t in tokens):
                raise self._fail("a token contains a newline (not a compact JWS)")
            body = wire.encode(TokenBundle(len(tokens), b"\n".join(tokens)))
            sealed = self._link().seal(body, message="ConsentFull", count=self.s.count)
            return [self.send(self.s.peer, ConsentFull(PROTOCOL, self.s.session, self.s.count, sealed))]
        verdict = self._one(inbox, ConsentVerdict)
        answer = self._open(self._link(), verdict.sealed, "ConsentVerdict", VerdictBody)
        accepted = np.asarray(answer.accepted)
        if answer.count != self.s.count or accepted.dtype != bool or accepted.shape != (self.s.count,):
            raise self._fail(f"verdict covers {accepted.shape} positions, expected ({self.s.count},) booleans")
        self.s.accepted, self.s.secret, self.s.peer_public, self.s.done = accepted, b"", b"", True
        return []
