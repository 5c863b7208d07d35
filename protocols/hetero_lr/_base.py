"""What the hetero-LR parties share: input checks, the persisted state, setup, masks and the optimiser.

:class:`PeerParty` is the part every hetero-LR party (training and scoring) has: one peer,
one inbox message per step, errors that say where the party was. :class:`LRTrainingParty` is
the step machine both training roles run: the hello (keys, sizes, settings checked against the
peer's), the batch schedule, masking of the gradient a party computes for its peer, and the
momentum update of its own weights. The roles (:mod:`.bank`, :mod:`.centre`) fill in the
phases of a batch.

State follows :class:`protocols.common.party.RestartableParty`: everything that must survive
a step is in ``self.s`` (an :class:`LRState`), restored through the one ``_restore`` sequence;
the keys are rebuilt from it in :meth:`LRTrainingParty._after_restore`.
"""

from __future__ import annotations

import functools
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from protocols.common import wire
from protocols.common.encoding import EncodingError
from protocols.common.inputs import as_features
from protocols.common.party import Envelope, ProtocolError, RestartableParty, data_digest, open_envelope
from protocols.hetero_lr import kernels
from protocols.hetero_lr.config import MIN_BATCH_ROWS, HeteroLRConfig
from protocols.hetero_lr.keys import cached_private_key
from protocols.hetero_lr.memo import FrozenMemo, freeze_derived, is_frozen
from protocols.hetero_lr.messages import BANK, PROTOCOL_ID, LRHello
from protocols.hetero_lr.scales import (
    LOGIT_LIMIT_BITS,
    STAT_SEC_BITS,
    X_INT_BITS,
    Codecs,
    gradient_scale_bits,
    gradient_value_bits,
    shared_gradient_bits,
    window_bits,
)
from protocols.hetero_lr.schedule import batch_schedule, batches_per_epoch, min_batch_rows, required_batch_rows
from protocols.paillier import EncryptedVector, PaillierError, PrivateKey, PublicKey, generate_keypair

M = TypeVar("M")

STATE_VERSION = "hetero-lr-state/1"

# per process: a node restoring its party every step from the same frozen data checks,
# encodes and digests it once (both roles may live in one process: tests, benchmarks)
_FEATURES: FrozenMemo[tuple[np.ndarray, np.ndarray | None, np.ndarray, int]] = FrozenMemo(maxsize=4)
_DIGESTS: FrozenMemo[str] = FrozenMemo(maxsize=4)


class PeerParty(RestartableParty):
    """A restartable party with exactly one peer, which it hears from once per step."""

    peer: str

    @property
    def finished(self) -> bool:
        return bool(self.s.phase == "done")

    def _where(self) -> str:
        """Who and where, for error messages."""
        return f"{self.role} {self.name!r}"

    def _fail(self, what: str) -> ProtocolError:
        return self.error_type(f"{self._where()}: {what}")

    def _open(self, env: Envelope, cls: type[M]) -> M:
        return open_envelope(env, cls, self._where())


@dataclass
class LRState:
    """A training party between steps (wire-encoded: a node never unpickles anything)."""

    version: str  # the PartyState fields first (checked by the restore sequence)
    role: str
    name: str
    data_digest: str
    peer: str
    config: dict  # HeteroLRConfig.to_dict(): the settings the party was built with
    phase: str
    step: int
    round: int
    private_key: bytes
    peer_key: bytes
    peer_features: int
    weights: Any
    velocity: Any
    best_weights: Any
    history: list
    masks: list
    epoch_started: float
    started: float
    # bank only
    own_loss: float = 0.0
    pending_train_loss: float | None = None
    best_val: float | None = None
    best_epoch: int = -1
    wait: int = 0
    # centre only
    loss_acc: bytes = b""


class LRTrainingParty(PeerParty):
    """Shared machinery of both training roles: setup, schedule, masks, optimiser, checked messages."""

    state_type: ClassVar[type] = LRState
    state_version: ClassVar[str] = STATE_VERSION
    peer_role: ClassVar[str] = ""
    s: LRState

    def __init__(
        self,
        name: str,
        peer: str,
        X_train: np.ndarray,
        config: HeteroLRConfig,
        *,
        X_val: np.ndarray | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        if not isinstance(config, HeteroLRConfig):
            raise TypeError("config must be a HeteroLRConfig (use HeteroLRConfig.from_section)")
        if name == peer:
            raise ValueError(f"party name and peer name are both {name!r}")
        self.name = name
        self.peer = peer
        self.config = config
        self.on_epoch = on_epoch
        self.codecs = Codecs.for_config(config)
        self.X, self.X_val, self.X_int, self._x_bits = _FEATURES.get(
            (self.role, name, self.codecs.features),
            (X_train, X_val),
            lambda: self._prepare_features(X_train, X_val),
        )
        self._sk: PrivateKey | None = None
        self._peer_pk: PublicKey | None = None
        self.s = self._new_state()

    # -- construction and restore --------------------------------------------------------
    @classmethod
    def from_state(cls, state: bytes, *data: Any, **options: Any) -> Self:
        """Rebuild a party from :meth:`to_state` bytes and the node's own data.

        ``data`` and ``options`` are the role's constructor arguments after ``name`` and
        ``peer`` (``BankLR.from_state(state, X_train, y_train, X_val=..., y_val=...)``,
        ``CentreLR.from_state(state, X_train, X_val=...)``); name, peer and settings come from
        the state. The constructor checks the data, :meth:`_restore` checks it is the same data.
        """
        s = cls.peek_state(state)
        build: Callable[..., Self] = cls  # a role's constructor: (name, peer, *data, config, **options)
        party = build(s.name, s.peer, *data, config=HeteroLRConfig(**s.config), **options)
        party._restore(s)
        return party

    def _prepare_features(
        self, X_train: np.ndarray, X_val: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
        """(X, X_val, fixed-point X, bits of max |fixed-point x|): every row checked, O(rows);
        memoised for frozen inputs (:mod:`.memo`)."""
        who = f"{self.role} {self.name!r}"
        X = as_features(X_train, who, "X_train")
        if X.shape[0] == 0:
            raise ValueError(f"{who}: X_train has no rows")
        X_v = as_features(X_val, who, "X_val", X.shape[1])
        X_int = self._encode_features(X, "X_train")
        if X_v is not None:
            self._encode_features(X_v, "X_val")  # refuse unscaled validation rows now, not mid-run
        x_bits = int(np.abs(X_int).max()).bit_length() if X_int.size else 1
        if is_frozen(X_train) and is_frozen(X_val):  # shared through the memo: nobody may write to them
            return freeze_derived(X), freeze_derived(X_v), freeze_derived(X_int), x_bits  # type: ignore[return-value]
        return X, X_v, X_int, x_bits

    def _encode_features(self, X: np.ndarray, what: str) -> np.ndarray:
        try:
            return self.codecs.features.encode(X)
        except EncodingError as exc:
            raise ValueError(
                f"{self.role} {self.name!r}: {what}: {exc} (features must be standardised; |x| < 2^{X_INT_BITS})"
            ) from None

    def _digest_arrays(self) -> tuple[np.ndarray | None, ...]:
        """The arrays a state is bound to (a role adds its labels)."""
        return (self.X, self.X_val)

    def _data_digest(self) -> str:
        """SHA-256 of :meth:`_digest_arrays`; computed once per frozen data in a process (:mod:`.memo`)."""
        arrays = self._digest_arrays()
        return _DIGESTS.get("data_digest", arrays, lambda: data_digest(*arrays))

    def _new_state(self) -> LRState:
        zeros = np.zeros(self.n_weights)
        return LRState(
            version=STATE_VERSION,
            role=self.role,
            name=self.name,
            peer=self.peer,
            config=self.config.to_dict(),
            data_digest=self._data_digest(),
            phase="init",
            step=0,
            round=0,
            private_key=b"",
            peer_key=b"",
            peer_features=-1,
            weights=zeros,
            velocity=zeros.copy(),
            best_weights=np.zeros(0),
            history=[],
            masks=[],
            epoch_started=0.0,
            started=0.0,
        )

    def _after_restore(self) -> None:
        s = self.s
        s.weights = np.asarray(s.weights, dtype=np.float64)
        s.velocity = np.asarray(s.velocity, dtype=np.float64)
        s.best_weights = np.asarray(s.best_weights, dtype=np.float64)
        if s.private_key:
            self._sk = cached_private_key(s.private_key, self.config.insecure_test_key)
        if s.peer_key:
            self._peer_pk = PublicKey.from_bytes(s.peer_key, insecure_test_key=self.config.insecure_test_key)

    # -- public surface -----------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        return np.array(self.s.weights, dtype=np.float64)

    @property
    def public_key(self) -> PublicKey | None:
        return None if self._sk is None else self._sk.public_key

    @property
    def model(self) -> dict[str, Any]:
        """This party's part of the model, JSON-ready (what the node stores and publishes)."""
        w = self.s.weights
        common = {"role": self.role, "n_features": self._raw_features(), "weights": w.tolist()}
        return {**common, **self._model_details(w), "epochs_run": len(self.s.history)}

    @abstractmethod
    def _model_details(self, weights: np.ndarray) -> dict[str, Any]:
        """The role's own model fields (its coefficients, and what else it decided)."""

    @property
    def n_train(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else int(self.X_val.shape[0])

    @property
    def n_weights(self) -> int:
        return int(self.X.shape[1])

    def _raw_features(self) -> int:
        """Feature count announced to the peer (the bank's intercept column is not counted)."""
        return self.n_weights

    @property
    def _own_key(self) -> PrivateKey:
        if self._sk is None:
            raise self._fail("no key yet: start() has not run")
        return self._sk

    @property
    def _peer_key(self) -> PublicKey:
        if self._peer_pk is None:
            raise self._fail("the peer's public key has not arrived yet")
        return self._peer_pk

    # -- schedule -------------------------------------------------------------------------
    @property
    def _nb(self) -> int:
        return batches_per_epoch(self.n_train, self.config.batch_size)

    @property
    def _total_rounds(self) -> int:
        return self.config.epochs * self._nb

    def _batch(self, r: int) -> np.ndarray | None:
        if r >= self._total_rounds:
            return None
        return _epoch_schedule(self.n_train, self.config.batch_size, self.config.seed, r // self._nb)[r % self._nb]

    def _is_record_round(self, r: int) -> bool:
        """The first round after an epoch's last batch: the epoch is evaluated in it."""
        return r > 0 and r % self._nb == 0

    def _is_last_batch_of_epoch(self, r: int) -> bool:
        return r < self._total_rounds and r % self._nb == self._nb - 1

    # -- checked input ---------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.role} {self.name!r} at step {self.s.step} (round {self.s.round}, phase {self.s.phase})"

    def _open_current(self, env: Envelope, cls: type[M]) -> M:
        """The ``cls`` message in ``env``, refused unless it is for this round (no replays, no reordering)."""
        msg = self._open(env, cls)
        got = getattr(msg, "round", None)
        if got != self.s.round:
            raise self._fail(f"{cls.__name__} is for round {got}, expected round {self.s.round}")
        return msg

    def _check_fingerprint(self, msg: Any, pk: PublicKey) -> None:
        if msg.key_fingerprint != pk.fingerprint:
            raise self._fail(
                f"{type(msg).__name__} was encrypted under key {msg.key_fingerprint}, "
                f"expected {pk.fingerprint} (wrong key)"
            )

    def _cts(self, pk: PublicKey, data: bytes, count: int, what: str) -> EncryptedVector:
        try:
            return kernels.parse_ciphertexts(pk, data, count, what)
        except (ProtocolError, PaillierError) as exc:
            raise self._fail(str(exc)) from None

    def _partial_scores(self, X: np.ndarray, what: str) -> np.ndarray:
        """``X @ w`` on this party's rows; outside the fixed-point range means training diverged."""
        u: np.ndarray = X @ self.s.weights
        if not np.all(np.abs(u) < 2.0**LOGIT_LIMIT_BITS):
            raise self._fail(
                f"the {what} partial scores left the fixed-point range: training diverged (lower learning_rate)"
            )
        return u

    # -- the step machine ------------------------------------------------------------------
    def start(self) -> list[Envelope]:
        if self.s.phase != "init":
            raise self._fail("start() called twice")
        _, sk = generate_keypair(self.config.key_bits, insecure_test_key=self.config.insecure_test_key)
        self.s.private_key = sk.to_bytes()
        self._sk = cached_private_key(self.s.private_key, self.config.insecure_test_key)
        self._sk.random_obfuscators(1)  # build the fixed-base tables now: setup, not the first batch
        self.s.started = time.time()
        self.s.phase = "hello_sent"
        hello = LRHello(
            protocol=PROTOCOL_ID,
            role=self.role,
            public_key=sk.public_key.to_bytes(),
            n_train=self.n_train,
            n_val=self.n_val,
            n_features=self._raw_features(),
            shared=self.config.shared_settings(),
        )
        return [self.send(self.peer, hello)]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        self.s.step += 1
        env = self._one_from(inbox, self.peer)
        handler = {
            "hello_sent": self._on_hello,
            "partials_sent": self._on_partials,
            "gradient_sent": self._on_masked_gradient,
            "plain_sent": self._on_masked_plain,
            "finishing": self._on_final_plain,
        }.get(self.s.phase)
        if handler is None:
            raise self._fail(f"received {_kind(env)} but the party is {'finished' if self.finished else 'not started'}")
        try:
            return handler(env)
        except (PaillierError, EncodingError) as exc:
            raise self._fail(str(exc)) from None

    def _on_hello(self, env: Envelope) -> list[Envelope]:
        hello = self._open(env, LRHello)
        if hello.protocol != PROTOCOL_ID:
            raise self._fail(f"peer speaks {hello.protocol!r}, expected {PROTOCOL_ID!r}")
        if hello.role != self.peer_role:
            raise self._fail(f"peer {self.peer!r} announced role {hello.role!r}, expected {self.peer_role!r}")
        if (hello.n_train, hello.n_val) != (self.n_train, self.n_val):
            raise self._fail(
                f"row counts differ: peer has {hello.n_train} train / {hello.n_val} validation rows, "
                f"we have {self.n_train} / {self.n_val} (alignment mismatch)"
            )
        mine = self.config.shared_settings()
        diff = sorted(k for k in set(mine) | set(hello.shared) if mine.get(k) != hello.shared.get(k))
        if diff:
            raise self._fail(
                "settings differ between the parties: "
                + ", ".join(f"{k}: ours {mine.get(k)!r} vs peer {hello.shared.get(k)!r}" for k in diff)
            )
        try:
            peer_pk = PublicKey.from_bytes(hello.public_key, insecure_test_key=self.config.insecure_test_key)
        except PaillierError as exc:
            raise self._fail(f"peer public key refused: {exc}") from None
        if peer_pk == self._own_key.public_key:
            raise self._fail("peer announced our own public key")
        if not isinstance(hello.n_features, int) or hello.n_features < 1:
            raise self._fail(f"peer announced {hello.n_features!r} features")
        self._check_batch_sizes(hello.n_features)
        self._peer_pk = peer_pk
        self.s.peer_key = hello.public_key
        self.s.peer_features = hello.n_features
        self.s.round = 0
        return self._send_partials()

    def _check_batch_sizes(self, peer_features: int) -> None:
        """Refuse a schedule whose batches (or validation set) are too small to aggregate over."""
        own = self._raw_features()
        nb_feat, nc_feat = (own, peer_features) if self.role == BANK else (peer_features, own)
        need = required_batch_rows(nb_feat, nc_feat)
        have = min_batch_rows(self.n_train, self.config.batch_size)
        if have < need:
            raise self._fail(
                f"batches would have {have} rows but at least {need} are required so that a "
                f"gradient never reveals residuals (bank {nb_feat}+1, centre {nc_feat} features): "
                "raise batch_size or use more rows"
            )
        if 0 < self.n_val < MIN_BATCH_ROWS:
            raise self._fail(
                f"{self.n_val} validation rows: at least {MIN_BATCH_ROWS} needed for the "
                "aggregate validation loss not to reveal per-row values"
            )

    @abstractmethod
    def _send_partials(self) -> list[Envelope]:
        """Phase A: this round's encrypted partials for the peer."""

    @abstractmethod
    def _on_partials(self, env: Envelope) -> list[Envelope]:
        """Phase B: the peer's partials in, our masked encrypted gradient for the peer out."""

    @abstractmethod
    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        """Phase C: decrypt the peer's masked gradient and return it."""

    @abstractmethod
    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        """Phase D: unmask our gradient, update, start the next round."""

    def _on_final_plain(self, env: Envelope) -> list[Envelope]:
        raise self._fail("unexpected message while finishing")

    # -- masks and optimiser ---------------------------------------------------------------
    def _gradient_value_bits(self, n_rows: int) -> int:
        """Bound on |X^T (s d)| (fixed-point integers) for masking the gradient computed here."""
        return gradient_value_bits(n_rows, self._x_bits, self.config)

    def _mask_gradient(self, enc: EncryptedVector, n_rows: int) -> EncryptedVector:
        """``enc + Enc(M)`` with fresh randomness and ``M`` uniform over almost all of ``Z_n`` (kept to unmask).

        Why uniform, not a mask a few bits above the gradient's bound: the peer chose the
        plaintexts this gradient was computed from, and could have inflated them so that our
        features land above any bounded mask. Against a uniform ``M`` the decryption is
        (statistically) uniform whatever was encrypted; the peer returns only the low
        :func:`~protocols.hetero_lr.scales.window_bits`, which is all we need (see :meth:`_unmask`).
        """
        pk = self._peer_key
        bound = shared_gradient_bits(n_rows, self.config)
        if bound + STAT_SEC_BITS + 2 >= pk.bits:
            raise self._fail(f"a {bound}-bit gradient bound leaves no room for a mask in the peer's {pk.bits}-bit key")
        try:
            masks = kernels.uniform_masks(pk, len(enc), bound)
        except ProtocolError as exc:
            raise self._fail(str(exc)) from None
        self.s.masks = masks
        return enc + kernels.encrypt_fresh(pk, [kernels.signed_plaintext(pk, m) for m in masks])

    def _decrypt_window(self, masked: EncryptedVector, n_rows: int) -> list[int]:
        """Decrypt the peer's masked gradient and return only its low window bits (nothing above leaves)."""
        sk = self._own_key
        bits = window_bits(n_rows, self.config)
        return [kernels.window(sk.public_key, int(v), bits) for v in sk.decrypt(masked)]

    def _unmask(self, values: list, n_rows: int) -> np.ndarray:
        """Own gradient (float) from the peer's window of our masked vector, every entry range-checked.

        The bound is the one our own data implies (``max |x|`` of our rows, the shared residual
        and weight ranges). A value outside it means the peer deviated (inflated the values we
        computed on, or returned something else than the decryption), decrypted with a wrong
        key, or a ciphertext was corrupted: the run stops naming party, step, batch and entry.
        """
        if len(values) != len(self.s.masks):
            raise self._fail(f"masked gradient has {len(values)} values, expected {len(self.s.masks)}")
        bits = window_bits(n_rows, self.config)
        bound = 1 << self._gradient_value_bits(n_rows)
        grads = []
        for i, (v, m) in enumerate(zip(values, self.s.masks)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise self._fail(f"masked gradient value {i} is not an integer")
            if not 0 <= v < 1 << bits:
                raise self._fail(f"masked gradient value {i} is outside the {bits}-bit window the peer must return")
            g = kernels.unmask_window(v, m, bits)
            if abs(g) >= bound:
                raise self._fail(
                    f"gradient entry {i} of batch {self.s.round % self._nb} (round {self.s.round}) is out of "
                    f"range after unmasking (|g| >= 2^{bound.bit_length() - 1}): the peer deviated from the "
                    "protocol (inflated the values we computed on, or returned something else than the "
                    "decryption), decrypted with the wrong key, or a ciphertext was corrupted"
                )
            grads.append(g)
        self.s.masks = []
        scale_bits = gradient_scale_bits(self.config)
        return np.array([g / 2.0**scale_bits for g in grads], dtype=np.float64) / n_rows

    def _l2_mask(self) -> np.ndarray:
        return np.ones(self.n_weights)

    def _update_and_continue(self, values: list, rows: np.ndarray | None) -> list[Envelope]:
        """End of a round: unmask our gradient (if the round had a batch), update, send the next partials."""
        if rows is not None:
            self._apply_update(self._unmask(list(values), len(rows)), self.s.round // self._nb)
        self.s.round += 1
        return self._send_partials()

    # -- resuming after a lost coordinator ------------------------------------------------
    def resume_point(self) -> int | None:
        """Epochs completed, when this party has just sent the partials of an epoch's first round.

        Both parties reach it in the same relay step (after both applied the epoch's last batch);
        the only messages in flight are then the two parties' partials, which :meth:`resume`
        recomputes from the state (``_send_partials`` only resets per-epoch accumulators there).
        """
        r = self.s.round
        if self.s.phase == "partials_sent" and r > 0 and r % self._nb == 0:
            return r // self._nb
        return None

    def resume(self) -> list[Envelope]:
        if self.resume_point() is None:
            raise self._fail("cannot resume: the state is not at an epoch boundary")
        return self._send_partials()

    def _apply_update(self, grad: np.ndarray, epoch: int) -> None:
        cfg = self.config
        g = grad + cfg.l2 * self.s.weights * self._l2_mask()
        self.s.velocity = cfg.momentum * self.s.velocity + g
        self.s.weights = self.s.weights - cfg.learning_rate_at(epoch) * self.s.velocity

    def _settle_weights(self) -> None:
        """Training ends: keep the best-validation weights if asked, forget the masks."""
        if self.config.restore_best_weights and self.s.best_weights.size:
            self.s.weights = self.s.best_weights.copy()
        self.s.masks = []

    def _emit(self, entry: dict) -> None:
        self.s.history.append(entry)
        if self.on_epoch is not None:
            self.on_epoch(dict(entry))


@functools.lru_cache(maxsize=4)
def _epoch_schedule(n_rows: int, batch_size: int, seed: int, epoch: int) -> tuple[np.ndarray, ...]:
    """:func:`batch_schedule`, drawn once per epoch in a process (an O(rows) shuffle), read-only."""
    batches = batch_schedule(n_rows, batch_size, seed, epoch)
    for b in batches:
        b.flags.writeable = False
    return tuple(batches)


def _kind(env: Envelope) -> str:
    """The message type named in ``env`` for an error message, if it is a wire message at all."""
    try:
        return env.kind
    except wire.WireError:
        return "a message"
