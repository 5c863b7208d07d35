"""The centre's side: receive the intersection's tokens, judge them, send the verdict back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from protocols.common import wire
from protocols.common.channel import new_private_key, public_key_of
from protocols.common.party import Envelope
from protocols.consent._base import ConsentParty, ConsentState
from protocols.consent.messages import PROTOCOL, ConsentKey, ConsentTokens, ConsentVerdict, TokenBundle, VerdictBody

# The centre's decision: the token bundle (one token per common position, newline-separated,
# an empty line where the bank holds none) -> accepted mask. It is the centre's own (signature,
# issuer, audience, purpose, categories, validity, revocation), injected so this package stays
# free of policy and of the framework; it gets the bundle whole so it can work on it vectorised.
Judge = Callable[[bytes], np.ndarray]


class TokenJudge(ConsentParty):
    role = "consent judge"

    def __init__(self, name: str, peer: str, session: str, count: int, judge: Judge, s: ConsentState | None = None):
        super().__init__(s or ConsentState(self.role, name, peer, session, int(count)))
        self.judge = judge

    @classmethod
    def from_state(cls, state: bytes, judge: Judge) -> TokenJudge:
        s = cls.peek(state)
        return cls(s.name, s.peer, s.session, s.count, judge, s)

    def start(self) -> list[Envelope]:
        self.s.secret = new_private_key()
        return [
            self.send(self.s.peer, ConsentKey(PROTOCOL, self.s.session, self.s.count, public_key_of(self.s.secret)))
        ]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        msg = self._one(inbox, ConsentTokens)
        link = self._channel(self.s.secret, msg.public_key)
        bundle = self._open(link, msg.sealed, "ConsentTokens", TokenBundle)
        held = bundle.tokens.count(b"\n") + 1 if bundle.count else 0
        if bundle.count != self.s.count or held != self.s.count:
            raise self._fail(f"token bundle holds {held} tokens for {self.s.count} positions")
        accepted = np.asarray(self.judge(bundle.tokens), dtype=bool)
        if accepted.shape != (self.s.count,):
            raise self._fail(f"judge returned {accepted.shape}, expected ({self.s.count},)")
        sealed = link.seal(
            wire.encode(VerdictBody(self.s.count, accepted)), message="ConsentVerdict", count=self.s.count
        )
        self.s.accepted, self.s.secret, self.s.done = accepted, b"", True

        return [self.send(self.s.peer, ConsentVerdict(PROTOCOL, self.s.session, self.s.count, sealed))]
