"""The centre's side: receive the intersection's token keys, ask for the whole tokens it has not
verified before, judge, send the verdict back."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from protocols.common import wire
from protocols.common.channel import Channel, new_private_key, public_key_of
from protocols.common.party import Envelope
from protocols.consent._base import ConsentParty, ConsentState
from protocols.consent.messages import (
    KEY_CHARS,
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
)


class Judge(ABC):
    """The centre's decision (signature, issuer, audience, purpose, categories, validity,
    revocation), injected so this package stays free of policy and of the framework. It works on
    whole arrays: ``keys`` is one ``S86`` key per position (b'' where the bank holds no token)."""

    @abstractmethod
    def unknown(self, keys: np.ndarray) -> np.ndarray:
        """Positions (int64, increasing) whose key it has never verified: their whole tokens are
        requested. Every other non-empty key must be judged from what the judge already holds."""

    @abstractmethod
    def decide(self, keys: np.ndarray, positions: np.ndarray, tokens: bytes) -> np.ndarray:
        """Accepted mask per position; ``tokens`` holds the whole tokens of ``positions``,
        newline-separated, in that order."""


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

    def _link(self) -> Channel:
        return self._channel(self.s.secret, self.s.peer_public)

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if not self.s.peer_public:
            msg = self._one(inbox, ConsentTokens)
            self.s.peer_public = msg.public_key
            body = self._open(self._link(), msg.sealed, "ConsentTokens", TokenKeys)
            if body.count != self.s.count or len(body.keys) != self.s.count * KEY_CHARS:
                raise self._fail(f"{len(body.keys)} bytes of token keys for {self.s.count} positions")
            keys = np.frombuffer(body.keys, dtype=f"S{KEY_CHARS}")
            asked = np.asarray(self.judge.unknown(keys), dtype=np.int64)
            if not asked.size:
                return self._verdict(keys, asked, b"")
            self.s.keys, self.s.asked = body.keys, asked
            sealed = self._link().seal(
                wire.encode(RequestBody(self.s.count, asked)), message="ConsentRequest", count=self.s.count
            )
            return [self.send(self.s.peer, ConsentRequest(PROTOCOL, self.s.session, self.s.count, sealed))]
        msg_full = self._one(inbox, ConsentFull)
        bundle = self._open(self._link(), msg_full.sealed, "ConsentFull", TokenBundle)
        asked = np.asarray(self.s.asked, dtype=np.int64)
        held = bundle.tokens.count(b"\n") + 1 if bundle.count else 0
        if bundle.count != asked.size or held != asked.size:
            raise self._fail(f"token bundle holds {held} tokens for the {asked.size} positions asked")
        return self._verdict(np.frombuffer(self.s.keys, dtype=f"S{KEY_CHARS}"), asked, bundle.tokens)

    def _verdict(self, keys: np.ndarray, asked: np.ndarray, tokens: bytes) -> list[Envelope]:
        accepted = np.asarray(self.judge.decide(keys, asked, tokens), dtype=bool)
        if accepted.shape != (self.s.count,):
            raise self._fail(f"judge returned {accepted.shape}, expected ({self.s.count},)")
        sealed = self._link().seal(
            wire.encode(VerdictBody(self.s.count, accepted)), message="ConsentVerdict", count=self.s.count
        )
        self.s.accepted, self.s.secret, self.s.keys, self.s.asked, self.s.done = accepted, b"", b"", None, True
        return [self.send(self.s.peer, ConsentVerdict(PROTOCOL, self.s.session, self.s.count, sealed))]
