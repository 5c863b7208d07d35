"""Joint scoring with a trained hetero-LR model: the bank asks the centre for partial scores.

One request, one answer: the bank sends the row positions (common PSI order) it wants scored
and a fresh X25519 channel key; the centre answers ``u_c = X_c[rows] @ w_c`` *sealed to the
bank* (:mod:`protocols.common.channel`: the relay sees the size only), the bank adds its own
partial score and applies the sigmoid. The centre's partial scores of the requested rows are
the documented scoring leak to the bank (as in FATE); the coordinator learns none of them. The
envelopes themselves are signed by each node (:mod:`protocols.common.signing`), so the
coordinator cannot substitute either channel key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from protocols.common.channel import Channel, ChannelError, new_private_key, public_key_of
from protocols.common.inputs import as_features
from protocols.common.party import Envelope, data_digest
from protocols.hetero_lr._base import PeerParty
from protocols.hetero_lr.messages import BANK, CENTRE, PROTOCOL_ID

SCORE_STATE_VERSION = "hetero-lr-score-state/3"  # 3: the bank's channel key; scores travel sealed
CHANNEL_PROTOCOL = "hetero-lr/score"


@dataclass
class SealedScoreRequest:
    """Bank -> centre (scoring): score these rows; seal the answer to ``channel_key``."""

    protocol: str
    channel_key: bytes  # the bank's ephemeral X25519 public key (fresh per scoring run)
    rows: object  # int64 numpy array of row positions in the common (PSI) order


@dataclass
class SealedPartialScores:
    """Centre -> bank (scoring): ``u_centre = X_centre[rows] @ w_centre`` (float64, little
    endian) sealed under the centre's ephemeral ``channel_key`` and the bank's."""

    protocol: str
    channel_key: bytes
    count: int
    sealed: bytes


def _channel(secret: bytes, peer_key: object, me: str, peer: str) -> Channel:
    return Channel(secret, peer_key, protocol=CHANNEL_PROTOCOL, session="score", me=me, peer=peer)


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


@dataclass
class ScoreState:
    """A scoring party between steps (wire-encoded)."""

    version: str
    role: str
    name: str
    peer: str
    data_digest: str
    weights: Any
    phase: str
    rows: Any
    scores: Any
    secret: bytes = b""  # the bank's ephemeral X25519 private key (node-local state only)


class ScoringParty(PeerParty):
    """Both scorers: a model part (weights, or a model dict holding them) and this party's features."""

    state_type: ClassVar[type] = ScoreState
    state_version: ClassVar[str] = SCORE_STATE_VERSION
    s: ScoreState

    def __init__(self, name: str, peer: str, weights: np.ndarray | dict, X: np.ndarray) -> None:
        if isinstance(weights, dict):
            weights = weights["weights"]
        self.name, self.peer = name, peer
        w = np.asarray(weights, dtype=np.float64).ravel()
        self.X = as_features(X, f"{self.role} {name!r}", "X")
        expected = self.X.shape[1] + (1 if self.role == BANK else 0)
        if w.shape[0] != expected:
            raise ValueError(
                f"{self.role} {name!r}: model has {w.shape[0]} weights, data has {self.X.shape[1]} feature columns"
            )
        self.s = ScoreState(
            SCORE_STATE_VERSION,
            self.role,
            name,
            peer,
            data_digest(self.X),
            w,
            "init",
            np.zeros(0, np.int64),
            np.zeros(0),
        )

    @classmethod
    def from_state(cls, state: bytes, X: np.ndarray) -> Self:
        """Rebuild a scorer from :meth:`to_state` bytes and the same features ``X``."""
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, s.weights, X)
        party._restore(s)  # brings back the phase, the requested rows and any scores
        return party

    def _where(self) -> str:
        return f"{self.role} scorer {self.name!r} (phase {self.s.phase})"


class BankScorer(ScoringParty):
    """Scores aligned rows: asks the centre for ``u_centre`` of ``rows``, computes sigmoid(u_b + u_c).

    ``rows`` are positions in the common (PSI) order of the scoring set; default: all rows.
    Result in :attr:`scores` (probabilities) once :attr:`finished`.
    """

    role = BANK

    def __init__(
        self, name: str, peer: str, model: np.ndarray | dict, X_bank: np.ndarray, rows: np.ndarray | None = None
    ) -> None:
        super().__init__(name, peer, model, X_bank)
        rows = np.arange(self.X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.X.shape[0]):
            raise ValueError(f"bank {name!r}: score rows must lie in [0, {self.X.shape[0]})")
        self.s.rows = rows

    def start(self) -> list[Envelope]:
        self.s.phase = "requested"
        self.s.secret = new_private_key()
        rows = np.asarray(self.s.rows, np.int64)
        return [self.send(self.peer, SealedScoreRequest(PROTOCOL_ID, public_key_of(self.s.secret), rows))]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        if self.s.phase != "requested":
            raise self._fail("unexpected message")
        msg = self._open(env, SealedPartialScores)
        if msg.count != len(self.s.rows):
            raise self._fail(f"centre returned {msg.count} scores for {len(self.s.rows)} rows")
        try:
            plain = _channel(self.s.secret, msg.channel_key, self.name, self.peer).open(
                msg.sealed, message="PartialScores", count=msg.count
            )
        except ChannelError as exc:
            raise self._fail(f"sealed partial scores: {exc}") from None
        if len(plain) != 8 * msg.count:
            raise self._fail(f"sealed partial scores hold {len(plain)} bytes, expected {8 * msg.count}")
        u_c = np.frombuffer(plain, dtype="<f8").astype(np.float64)
        if u_c.shape != (len(self.s.rows),) or not np.all(np.isfinite(u_c)):
            raise self._fail(f"centre returned {u_c.shape} scores for {len(self.s.rows)} rows")
        w = np.asarray(self.s.weights)
        u_b = self.X[self.s.rows] @ w[:-1] + w[-1]
        self.s.scores = sigmoid(u_b + u_c)
        self.s.phase = "done"
        return []

    @property
    def scores(self) -> np.ndarray:
        if not self.finished:
            raise RuntimeError("scores are available once the scoring protocol has finished")
        return np.asarray(self.s.scores, dtype=np.float64).copy()


class CentreScorer(ScoringParty):
    """Answers one :class:`ScoreRequest` with its partial scores (the documented scoring leak)."""

    role = CENTRE

    def start(self) -> list[Envelope]:
        self.s.phase = "waiting"
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one_from(inbox, self.peer)
        if self.s.phase not in ("init", "waiting"):
            raise self._fail("unexpected message")
        msg = self._open(env, SealedScoreRequest)
        if msg.protocol != PROTOCOL_ID:
            raise self._fail(f"request for protocol {msg.protocol!r}")
        rows = np.asarray(msg.rows)
        if (
            rows.ndim != 1
            or rows.dtype.kind not in "iu"
            or (rows.size and (rows.min() < 0 or rows.max() >= self.X.shape[0]))
        ):
            raise self._fail(f"score request rows must be integer positions in [0, {self.X.shape[0]})")
        u = self.X[rows] @ np.asarray(self.s.weights)
        self.s.phase = "done"
        mine = new_private_key()  # fresh per answer: this channel seals exactly one message
        try:
            ch = _channel(mine, msg.channel_key, self.name, self.peer)
        except ChannelError as exc:
            raise self._fail(f"score request channel key: {exc}") from None
        sealed = ch.seal(u.astype("<f8").tobytes(), message="PartialScores", count=int(rows.size))
        return [self.send(self.peer, SealedPartialScores(PROTOCOL_ID, public_key_of(mine), int(rows.size), sealed))]
