"""Joint SecureBoost scoring: the guest walks its trees and asks the host for direction bits.

The guest (bank) has the trees, leaf values and its own splits; at a host node it needs one
bit, "does row r go left at opaque split s?", which only the host (credit centre) can answer.
Two modes, both as restartable :class:`~protocols.common.party.RestartableParty` objects:

* ``"cross"`` (default, one round trip): the guest asks for every scored row at every host
  split id of the model. The host learns which rows are scored (it must hold them anyway) and
  nothing about the guest's splits or paths; the guest learns the host's bit for every
  (row, host split), also at nodes the row never reaches.
* ``"pairs"`` (one round trip per host level on the paths): the guest walks as far as it can,
  then asks only for the (row, split id) pairs it is standing at. The guest learns only bits
  on the rows' paths; the host learns which of its splits each row reaches, i.e. something
  about the guest's split outcomes.

Rows are positions in the PSI-aligned scoring set (row i at the guest = row i at the host).

The direction bits travel *sealed to the guest* (:mod:`protocols.common.channel`): the guest
sends a fresh X25519 key (:class:`SbScoringKey`) with its first query, the host seals each
reply under a fresh key of its own (:class:`SbSealedDirectionReply`), so the coordinator sees
sizes only. Queries (row positions, opaque split ids) stay readable: the host must read them,
and they carry no feature value or label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.common.channel import Channel, ChannelError, new_private_key, public_key_of
from protocols.common.party import Envelope, ProtocolError, RestartableParty, data_digest, open_envelope
from protocols.gbdt.plain import OWNER_GUEST, OWNER_HOST, raw_go_left, sigmoid
from protocols.secureboost._base import check_sender, required_features
from protocols.secureboost.messages import PROTOCOL, SbDirectionQuery, SbScoringDone
from protocols.secureboost.model import ModelError, SecureBoostGuestModel, SecureBoostHostModel

_VERSION = "secureboost-scoring/3"  # 3: direction bits sealed to the guest (channel keys in state)
CHANNEL_PROTOCOL = "secureboost/score"


@dataclass
class SbScoringKey:
    """Guest -> host, once, before its first query: the guest's ephemeral X25519 public key."""

    protocol: str
    channel_key: bytes


@dataclass
class SbSealedDirectionReply:
    """Host -> guest: ``np.packbits`` of the direction bits (1 = left) in the query's order,
    sealed under the host's fresh ``channel_key`` and the guest's."""

    protocol: str
    query: int
    n_bits: int
    channel_key: bytes
    sealed: bytes


def _channel(secret: bytes, peer_key: object, me: str, peer: str) -> Channel:
    return Channel(secret, peer_key, protocol=CHANNEL_PROTOCOL, session="score", me=me, peer=peer)


@dataclass
class _ScoringState:
    version: str
    role: str
    name: str
    peer: str
    data_digest: str
    mode: str
    phase: str  # init | wait | done
    query: int
    pos: Any  # pairs mode: (n_trees, n_rows) current node per tree and row
    asked_rows: Any  # the outstanding query (to interpret the reply)
    asked_ids: Any
    raw: Any
    channel: bytes = b""  # guest: its ephemeral X25519 private key; host: the guest's public key


class _ScoringParty(RestartableParty):
    """What both scoring roles share: the checked rows, the state, the restore and the errors.

    The state is bound to the scored rows by their digest; the model half is handed back on
    restore like the data (scoring trains nothing, so :attr:`model` is the base's refusal).
    """

    state_type = _ScoringState
    state_version = _VERSION

    def __init__(self, name: str, peer: str, n_features: int, X: np.ndarray, *, mode: str, phase: str) -> None:
        self.name, self.peer = name, peer
        self.who = f"{self.role.replace('-', ' ')} {name!r}"
        self.X = required_features(X, self.who, "features")
        if self.X.shape[1] != n_features:
            raise ValueError(f"{self.who}: model expects {n_features} features, X has {self.X.shape[1]}")
        e = np.zeros(0, dtype=np.int64)
        self.s = _ScoringState(
            _VERSION, self.role, name, peer, data_digest(self.X), mode, phase, 0, e, e, e.astype(np.uint64), np.zeros(0)
        )

    def _after_restore(self) -> None:
        s = self.s
        s.asked_rows = np.asarray(s.asked_rows, dtype=np.int64)
        s.asked_ids = np.asarray(s.asked_ids, dtype=np.uint64)
        s.raw = np.asarray(s.raw, dtype=np.float64)

    @property
    def finished(self) -> bool:
        return bool(self.s.phase == "done")

    def _fail(self, what: str) -> ProtocolError:
        return self.error_type(f"{self.who} (query {self.s.query}, phase {self.s.phase}): {what}")


class SecureBoostScoringGuest(_ScoringParty):
    """Scores the guest's rows with the joint model; result in :attr:`scores` once finished."""

    role = "scoring-guest"

    def __init__(
        self, name: str, peer: str, model: SecureBoostGuestModel, X: np.ndarray, *, mode: str = "cross"
    ) -> None:
        if mode not in ("cross", "pairs"):
            raise ValueError(f'scoring mode must be "cross" or "pairs", got {mode!r}')
        super().__init__(name, peer, model.n_features, X, mode=mode, phase="init")
        self.guest_model = model
        self.s.pos = np.zeros((len(model.trees), self.X.shape[0]), dtype=np.int64)

    @classmethod
    def from_state(cls, state: bytes, model: SecureBoostGuestModel, X: np.ndarray) -> SecureBoostScoringGuest:
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, model, X, mode=s.mode)
        party._restore(s)
        return party

    def _after_restore(self) -> None:
        super()._after_restore()
        self.s.pos = np.asarray(self.s.pos, dtype=np.int64).reshape(len(self.guest_model.trees), self.X.shape[0])

    @property
    def raw_scores(self) -> np.ndarray:
        if not self.finished:
            raise RuntimeError("scoring has not finished")
        return np.array(self.s.raw, dtype=np.float64)

    @property
    def scores(self) -> np.ndarray:
        """Default probabilities of the scored rows."""
        return sigmoid(self.raw_scores)

    # -- steps ---------------------------------------------------------------------------------
    def start(self) -> list[Envelope]:
        if self.s.phase != "init":
            raise self._fail("start() called twice")
        if self.s.mode == "cross":
            ids = self.guest_model.host_split_ids
            n = self.X.shape[0]
            if ids.size == 0 or n == 0:
                self.s.raw = self.guest_model.decision_function(self.X, lambda sid, rows: np.zeros(0, dtype=bool))
                return self._done()
            return self._ask("cross", np.arange(n, dtype=np.int64), ids)
        return self._walk()

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if self.s.phase != "wait":
            raise self._fail(f"received {len(inbox)} message(s) but expects none")
        if len(inbox) != 1 or inbox[0].sender != self.peer or inbox[0].kind != "SbSealedDirectionReply":
            raise self._fail(
                f"expected one SbSealedDirectionReply from {self.peer!r}, got {[(e.sender, e.kind) for e in inbox]}"
            )
        msg = open_envelope(inbox[0], SbSealedDirectionReply, self.who)
        if msg.protocol != PROTOCOL or msg.query != self.s.query:
            raise self._fail(f"reply to query {msg.query}, expected {self.s.query} (wrong step)")
        try:
            opened = _channel(self.s.channel, msg.channel_key, self.name, self.peer).open(
                msg.sealed, message="SbDirectionReply", query=int(msg.query), n_bits=int(msg.n_bits)
            )
        except ChannelError as exc:
            raise self._fail(f"sealed direction bits: {exc}") from None
        rows, ids = self.s.asked_rows, self.s.asked_ids
        n_bits = rows.size * ids.size if self.s.mode == "cross" else rows.size
        bits = np.frombuffer(opened, dtype=np.uint8)
        if msg.n_bits != n_bits or bits.size != (n_bits + 7) // 8:
            raise self._fail(f"{msg.n_bits} direction bits in {bits.size} bytes, expected {n_bits} (wrong length)")
        left = np.unpackbits(bits, count=n_bits).astype(bool) if n_bits else np.zeros(0, dtype=bool)
        if self.s.mode == "cross":
            col = {int(s): j for j, s in enumerate(ids.tolist())}
            matrix = left.reshape(rows.size, ids.size)
            self.s.raw = self.guest_model.decision_function(self.X, lambda sid, r: matrix[r, col[sid]])
            return self._done()
        return self._walk(left)

    def _ask(self, mode: str, rows: np.ndarray, ids: np.ndarray) -> list[Envelope]:
        out = []
        if not self.s.channel:  # first query: give the host the key to seal its answers to
            self.s.channel = new_private_key()
            out.append(self.send(self.peer, SbScoringKey(PROTOCOL, public_key_of(self.s.channel))))
        self.s.query += 1
        self.s.asked_rows, self.s.asked_ids = rows, np.asarray(ids, dtype=np.uint64)
        self.s.phase = "wait"
        return [*out, self.send(self.peer, SbDirectionQuery(PROTOCOL, self.s.query, mode, rows, self.s.asked_ids))]

    def _done(self) -> list[Envelope]:
        self.s.phase = "done"
        return [self.send(self.peer, SbScoringDone(PROTOCOL, self.s.query))]

    def _walk(self, answer: np.ndarray | None = None) -> list[Envelope]:
        """Pairs mode: apply the answered bits, walk guest nodes, ask for the next host nodes."""
        trees, pos = self.guest_model.trees, self.s.pos
        if answer is not None:
            key_rows, key_ids = self.s.asked_rows, self.s.asked_ids
            lookup = {(int(r), int(i)): bool(b) for r, i, b in zip(key_rows.tolist(), key_ids.tolist(), answer)}
            for t, tree in enumerate(trees):
                at_host = np.flatnonzero(tree.owner[pos[t]] == OWNER_HOST)
                for r in at_host.tolist():
                    k = pos[t, r]
                    go = lookup.get((r, int(tree.split_id[k])))
                    if go is None:
                        raise self._fail(f"no direction for row {r} at host split {int(tree.split_id[k])}")
                    pos[t, r] = tree.left[k] if go else tree.right[k]
        ask_r, ask_i = [], []
        for t, tree in enumerate(trees):
            while True:
                owner = tree.owner[pos[t]]
                g = np.flatnonzero(owner == OWNER_GUEST)
                if g.size == 0:
                    break
                k = pos[t, g]
                x = self.X[g, tree.feature[k]]
                go_left = (x <= tree.threshold[k]) | (tree.missing_left[k] & np.isnan(x))  # NaN: learned way
                for node in np.unique(k[tree.cat_start[k] >= 0]).tolist():  # categorical: a level set
                    at = k == node
                    go_left[at] = raw_go_left(x[at], np.nan, bool(tree.missing_left[node]), tree.levels(node))
                pos[t, g] = np.where(go_left, tree.left[k], tree.right[k])
            h = np.flatnonzero(tree.owner[pos[t]] == OWNER_HOST)
            ask_r.append(h)
            ask_i.append(tree.split_id[pos[t, h]])
        rows = np.concatenate(ask_r) if ask_r else np.zeros(0, dtype=np.int64)
        ids = np.concatenate(ask_i) if ask_i else np.zeros(0, dtype=np.uint64)
        if rows.size:
            pairs = np.unique(np.stack([rows.astype(np.uint64), ids.astype(np.uint64)], axis=1), axis=0)
            return self._ask("pairs", pairs[:, 0].astype(np.int64), pairs[:, 1])
        raw = np.full(self.X.shape[0], self.guest_model.base_score)
        for t, tree in enumerate(trees):
            raw = raw + tree.value[pos[t]]
        self.s.raw = raw
        return self._done()


class SecureBoostScoringHost(_ScoringParty):
    """Answers direction queries from its split table; never sends a threshold or feature value."""

    role = "scoring-host"

    def __init__(self, name: str, peer: str, model: SecureBoostHostModel, X: np.ndarray) -> None:
        super().__init__(name, peer, model.n_features, X, mode="", phase="wait")
        self.host_model = model

    @classmethod
    def from_state(cls, state: bytes, model: SecureBoostHostModel, X: np.ndarray) -> SecureBoostScoringHost:
        s = cls.peek_state(state)
        party = cls(s.name, s.peer, model, X)
        party._restore(s)
        return party

    @property
    def queries(self) -> int:
        return int(self.s.query)

    def start(self) -> list[Envelope]:
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        out: list[Envelope] = []
        for env in inbox:
            check_sender(self, env, "scoring")
            if env.kind == "SbScoringDone":
                self.s.phase = "done"
                continue
            if env.kind == "SbScoringKey":
                if self.s.channel:
                    raise self._fail("a second scoring key (the guest sends one per scoring run)")
                key = open_envelope(env, SbScoringKey, self.who)
                if key.protocol != PROTOCOL:
                    raise self._fail(f"scoring key for protocol {key.protocol!r}")
                self.s.channel = key.channel_key
                continue
            if env.kind != "SbDirectionQuery":
                raise self._fail(f"unexpected {env.kind}")
            q = open_envelope(env, SbDirectionQuery, self.who)
            if q.protocol != PROTOCOL or q.query != self.s.query + 1:
                raise self._fail(f"query {q.query} out of order (expected {self.s.query + 1})")
            try:
                left = self._directions(q)
            except ModelError as exc:
                raise self._fail(str(exc)) from None
            self.s.query = q.query
            out.append(self.send(self.peer, self._sealed_reply(q.query, left)))
        return out

    def _sealed_reply(self, query: int, left: np.ndarray) -> SbSealedDirectionReply:
        if not self.s.channel:
            raise self._fail("a direction query before the guest's scoring key")
        mine = new_private_key()  # fresh per reply: each channel seals one message
        try:
            ch = _channel(mine, self.s.channel, self.name, self.peer)
        except ChannelError as exc:
            raise self._fail(f"guest scoring key: {exc}") from None
        n = int(left.size)
        sealed = ch.seal(np.packbits(left).tobytes(), message="SbDirectionReply", query=int(query), n_bits=n)
        return SbSealedDirectionReply(PROTOCOL, int(query), n, public_key_of(mine), sealed)

    def _directions(self, q: SbDirectionQuery) -> np.ndarray:
        """The direction bits a query asks for, in its order (a ModelError for a bad query)."""
        rows = np.asarray(q.rows, dtype=np.int64)
        ids = np.asarray(q.split_ids, dtype=np.uint64)
        if q.mode == "cross":
            rr, ii = np.repeat(rows, ids.size), np.tile(ids, rows.size)
        elif q.mode == "pairs":
            if rows.shape != ids.shape:
                raise ModelError("rows and split ids differ in length")
            rr, ii = rows, ids
        else:
            raise ModelError(f"unknown query mode {q.mode!r}")
        return self.host_model.directions(self.X, rr, ii)
