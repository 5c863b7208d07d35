"""ECDH-PSI as a relay-driven, restartable :class:`~protocols.common.party.RestartableParty`.

:class:`protocols.psi.engine.PsiParty` is the message-level state machine; this adapter gives it
the envelope interface the coordinator drives and lets a node persist it between Flower messages
(``to_state``/``from_state``). The state holds this party's PSI secret, its channel key and its
shuffle permutation: node-local secrets that never go on the wire. The ids themselves are not
in the state; the node re-reads them from its own storage, and the same inputs must be given
again (a digest of the prepared ids is checked on restore).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from protocols.common.party import Envelope, RestartableParty, open_envelope
from protocols.psi.engine import DEFAULT_TRUNCATE, PsiCheckpoint, PsiParty, PsiResult
from protocols.psi.messages import STEP1, STEP2, PsiBlinded, PsiReblinded
from protocols.psi.prepare import Allowed

_EXPECTED: dict[str, tuple[type, str]] = {"sent_blinded": (PsiBlinded, STEP1), "sent_keys": (PsiReblinded, STEP2)}


@dataclass
class _PsiState(PsiCheckpoint):
    """The engine's checkpoint plus who this party is (the :class:`PartyState` fields)."""

    version: str
    role: str
    name: str
    data_digest: str
    peer: str
    side: str  # PSI role: "A" or "B"


class PsiRelayParty(RestartableParty):
    """Party ``name`` runs PSI role ``side`` ("A" or "B") against ``peer``."""

    role = "psi"
    state_type = _PsiState
    state_version = "psi-party-v2"
    s: _PsiState

    def __init__(
        self,
        name: str,
        peer: str,
        side: str,
        ids: list[str],
        *,
        session: str,
        allowed: Allowed | None = None,
        truncate: int = DEFAULT_TRUNCATE,
        workers: int = 1,
    ):
        self.name, self.peer = name, peer
        self.psi = PsiParty(side, ids, session=session, allowed=allowed, truncate=truncate, workers=workers)
        self._digest = hashlib.sha256(self.psi.ids_digest()).hexdigest()
        self._checkpoint()

    def _data_digest(self) -> str:
        return self._digest

    def _checkpoint(self) -> None:
        """Refresh ``self.s`` from the engine after every step (``to_state`` encodes it)."""
        cp = self.psi.checkpoint()
        self.s = _PsiState(
            **{f.name: getattr(cp, f.name) for f in dataclasses.fields(PsiCheckpoint)},
            version=self.state_version,
            role=self.role,
            name=self.name,
            data_digest=self._data_digest(),
            peer=self.peer,
            side=self.psi.role,
        )

    def _after_restore(self) -> None:
        if self.s.side != self.psi.role:
            raise self._fail(f"state is for PSI role {self.s.side!r}, this party plays {self.psi.role!r}")
        self.psi.resume(self.s)

    # -- Party interface ----------------------------------------------------------------
    def start(self) -> list[Envelope]:
        out = [self.send(self.peer, self.psi.start())]
        self._checkpoint()
        return out

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        self._one_from(inbox, self.peer)
        if self.psi.state not in _EXPECTED:
            raise self._fail(f"unexpected {inbox[0].kind} in state {self.psi.state!r}")
        cls, step = _EXPECTED[self.psi.state]
        reply = self.psi.handle(open_envelope(inbox[0], cls, f"{self.role} {self.name!r}, {step}"))
        self._checkpoint()
        return [] if reply is None else [self.send(self.peer, reply)]

    @property
    def finished(self) -> bool:
        return self.psi.state == "done"

    def result(self) -> PsiResult:
        if not self.finished:
            raise self._fail("has not finished")
        return self.psi.result()

    # -- persistence between Flower messages ----------------------------------------------
    @classmethod
    def from_state(cls, state: bytes, ids: list[str], **options: Any) -> PsiRelayParty:
        """Rebuild from :meth:`to_state` bytes, the same ids and the same keyword options
        (``session``, ``allowed``, ``truncate``, ``workers``) as at creation."""
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, s.side, ids, **options)
        party._restore(s)
        return party
