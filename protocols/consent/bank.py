"""The bank's side: send the intersection's tokens sealed to the centre, learn which it accepts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protocols.common import wire
from protocols.common.channel import new_private_key
from protocols.common.party import Envelope
from protocols.consent._base import ConsentParty, ConsentState
from protocols.consent.messages import PROTOCOL, ConsentKey, ConsentTokens, ConsentVerdict, TokenBundle, VerdictBody


class TokenSender(ConsentParty):
    """``tokens[i]`` is the bank's token for common position ``i`` (``b""`` if it holds none).

    The tokens are handed back on restore (they live in the bank's files, not in the state)."""

    role = "consent token sender"

    def __init__(self, name: str, peer: str, session: str, tokens: Sequence[bytes], s: ConsentState | None = None):
        super().__init__(s or ConsentState(self.role, name, peer, session, len(tokens)))
        if len(tokens) != self.s.count:
            raise self._fail(f"{len(tokens)} tokens for {self.s.count} positions")
        if any(b"\n" in t for t in tokens):
            raise self._fail("a token contains a newline (not a compact JWS)")
        self.tokens = tokens

    @classmethod
    def from_state(cls, state: bytes, tokens: Sequence[bytes]) -> TokenSender:
        s = cls.peek(state)
        return cls(s.name, s.peer, s.session, tokens, s)

    def start(self) -> list[Envelope]:
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if not self.s.secret:
            key = self._one(inbox, ConsentKey)
            secret = new_private_key()
            link = self._channel(secret, key.public_key)
            bundle = wire.encode(TokenBundle(self.s.count, b"\n".join(self.tokens)))
            sealed = link.seal(bundle, message="ConsentTokens", count=self.s.count)
            self.s.secret, self.s.peer_public = secret, key.public_key
            msg = ConsentTokens(PROTOCOL, self.s.session, self.s.count, link.public_key, sealed)
            return [self.send(self.s.peer, msg)]
        verdict = self._one(inbox, ConsentVerdict)
        body = self._open(
            self._channel(self.s.secret, self.s.peer_public), verdict.sealed, "ConsentVerdict", VerdictBody
        )
        accepted = np.asarray(body.accepted)
        if body.count != self.s.count or accepted.dtype != bool or accepted.shape != (self.s.count,):
            raise self._fail(f"verdict covers {accepted.shape} positions, expected ({self.s.count},) booleans")
        self.s.accepted, self.s.secret, self.s.peer_public, self.s.done = accepted, b"", b"", True
        return []
