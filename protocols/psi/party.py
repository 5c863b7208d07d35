"""ECDH-PSI as a relay-driven, restartable :class:`~protocols.common.party.Party`.

:class:`protocols.psi.engine.PsiParty` is the message-level state machine; this adapter gives it the
envelope interface the coordinator drives and lets a node persist it between Flower messages
(``to_state``/``from_state``). The state holds this party's PSI secret, its channel key and its
shuffle permutation: node-local secrets that never go on the wire. The ids themselves are not
in the state; the node re-reads them from its own storage, and the same inputs must be given
again (a digest of the prepared ids is checked on restore).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocols.common import wire
from protocols.common.party import Envelope, Party, ProtocolError
from protocols.psi.engine import PsiBlinded, PsiParty, PsiResult

_VERSION = "psi-party-v1"


@dataclass
class _PsiState:
    version: str
    name: str
    peer: str
    role: str
    state: str
    ids_digest: str
    secret: bytes
    channel: bytes
    perm: np.ndarray
    peer_channel: bytes
    peer_count: int
    peer_keys: bytes
    result_rows: np.ndarray
    stats: dict


class PsiRelayParty(Party):
    """Party ``name`` runs PSI role ``role`` ("A" or "B") against ``peer``."""

    def __init__(
        self,
        name: str,
        peer: str,
        role: str,
        ids: list[str],
        *,
        session: str,
        allowed: Any = None,
        truncate: int = 12,
        workers: int = 1,
    ):
        self.name, self.peer = name, peer
        self.psi = PsiParty(
            role,
            ids,
            session=session,
            allowed=allowed,
            truncate=truncate,  # type: ignore[arg-type]
            workers=workers,
        )
        self._peer_channel = b""
        self._result: PsiResult | None = None

    # -- Party interface ----------------------------------------------------------------
    def start(self) -> list[Envelope]:
        return [self.send(self.peer, self.psi.start())]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if len(inbox) != 1 or inbox[0].sender != self.peer:
            raise ProtocolError(
                f"PSI party {self.name}: expected one message from {self.peer}, got {[e.sender for e in inbox]}"
            )
        payload = inbox[0].payload
        if self.psi.state == "sent_blinded":
            msg = wire.decode(payload, PsiBlinded) if wire.message_type(payload) == "PsiBlinded" else payload
            if isinstance(msg, PsiBlinded):
                self._peer_channel = msg.channel_key
        reply = self.psi.handle(payload)
        if reply is None:
            self._result = self.psi.result()
            return []
        return [self.send(self.peer, reply)]

    @property
    def finished(self) -> bool:
        return self.psi.state == "done"

    def result(self) -> PsiResult:
        if self._result is None:
            raise RuntimeError(f"PSI party {self.name} has not finished")
        return self._result

    # -- persistence between Flower messages ----------------------------------------------
    def _ids_digest(self) -> str:
        return hashlib.sha256(self.psi._ids.tobytes() + self.psi._rows.tobytes()).hexdigest()

    def to_state(self) -> bytes:
        p = self.psi
        res = self._result
        return wire.encode(
            _PsiState(
                version=_VERSION,
                name=self.name,
                peer=self.peer,
                role=p.role,
                state=p.state,
                ids_digest=self._ids_digest(),
                secret=p._secret,
                channel=p._channel.private_bytes_raw(),
                perm=np.asarray(getattr(p, "_perm", np.zeros(0, np.int64)), dtype=np.int64),
                peer_channel=self._peer_channel,
                peer_count=int(p._peer_count),
                peer_keys=b"" if p._peer_keys is None else np.ascontiguousarray(p._peer_keys).tobytes(),
                result_rows=np.zeros(0, np.int64) if res is None else np.asarray(res.rows, np.int64),
                stats=dict(p.stats),
            )
        )

    @classmethod
    def from_state(
        cls, state: bytes, ids: list[str], *, session: str, allowed: Any = None, truncate: int = 12, workers: int = 1
    ) -> PsiRelayParty:
        s = wire.decode(state, _PsiState)
        if s.version != _VERSION:
            raise ProtocolError(f"PSI party state version {s.version!r} is not {_VERSION!r}")
        party = cls(s.name, s.peer, s.role, ids, session=session, allowed=allowed, truncate=truncate, workers=workers)
        if party._ids_digest() != s.ids_digest:
            raise ProtocolError(f"PSI party {s.name}: its ids changed between protocol steps")
        p = party.psi
        p._secret = s.secret
        p._channel = X25519PrivateKey.from_private_bytes(s.channel)
        p._perm = s.perm
        p.state = s.state
        p.stats = dict(s.stats)
        party._peer_channel = s.peer_channel
        if s.peer_channel:
            shared = p._channel.exchange(X25519PublicKey.from_public_bytes(s.peer_channel))
            p._seal_out = ChaCha20Poly1305(p._derive(shared, p.role))
            p._seal_in = ChaCha20Poly1305(p._derive(shared, p.peer))
        p._peer_count = s.peer_count
        if s.peer_keys:
            p._peer_keys = np.frombuffer(s.peer_keys, dtype=np.uint8).reshape(s.peer_count, p.truncate).copy()
        if s.state == "done":
            rows = s.result_rows
            party._result = PsiResult(ids=[], rows=rows, size=int(rows.size), stats=dict(s.stats))
        return party
