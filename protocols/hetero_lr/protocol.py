"""Two-party vertical logistic regression without a key-holding third party.

The bank (guest: labels, its features, the intercept) and the credit centre (host: features
only) train one logistic model on rows they both hold in the same PSI order. Each party owns
its own Paillier key; nobody else holds a key, so the coordinator (which relays every message
and may collude with the centre) cannot decrypt anything.

Model and loss: ``z = u_bank + u_centre`` with ``u_bank = [X_b, 1] w_b``, ``u_centre = X_c w_c``
and the second-order Taylor expansion of the logistic loss around 0 (``y`` in {-1, +1})::

    loss(z, y) ~ log 2 - y z / 2 + z^2 / 8,   d = dloss/dz = 0.25 (u_bank + u_centre) - 0.5 y

so each party's gradient is ``X^T (s * d) / B + l2 w`` (``s``: optional per-class weights).

One batch, 3 relay steps (both parties act in every step):

A. bank -> centre ``Enc_b(s (0.25 u_b - 0.5 y))``; centre -> bank ``Enc_c(0.25 u_c)``.
B. centre adds ``0.25 u_c`` homomorphically, forms ``Enc_b(X_c^T (s d) + R_c)`` by
   multi-exponentiation and sends it; the bank likewise forms ``Enc_c(X_b^T (s d) + R_b)``.
   The centre also folds the epoch's Taylor-loss cross term into one ciphertext for the bank.
C. each decrypts the *masked* vector it received (one value per peer feature) and returns it.
D. (= A of the next batch) each removes its mask, updates its weights, sends the next partials.

Masks ``R`` are uniform with ``STAT_SEC_BITS`` bits beyond the value's bound (statistical
hiding) and are added as fresh encryptions, so the decrypting party also learns nothing from
the ciphertext randomness. See ``docs/protocols/hetero-lr.md`` for what each party, and the
coordinator, sees, and what the loss and scoring reveal.

Parties are restartable (:mod:`protocols.common.party`): ``to_state()`` holds the private key, the
peer's public key, weights, optimiser state, masks and counters; the data is handed back by
the caller on ``from_state`` and checked against a digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gmpy2
import numpy as np
from gmpy2 import mpz

from protocols.common import wire
from protocols.common.encoding import EncodingError, FixedPoint
from protocols.common.inputs import as_features
from protocols.common.party import Envelope, Party, ProtocolError
from protocols.hetero_lr.messages import (
    PROTOCOL_ID,
    BankMaskedGradient,
    BankMaskedPlain,
    BankPartials,
    CentreMaskedGradient,
    CentreMaskedPlain,
    CentrePartials,
    LRHello,
    PartialScores,
    ScoreRequest,
)
from protocols.paillier import (
    DJN_EXPONENT_BITS,
    MIN_KEY_BITS,
    EncryptedVector,
    PaillierError,
    PrivateKey,
    PublicKey,
    generate_keypair,
    multi_exponentiate,
)

log = logging.getLogger(__name__)

BANK = "bank"
CENTRE = "credit_centre"

STAT_SEC_BITS = 80  # statistical hiding of every masked value
X_INT_BITS = 11  # |feature| < 2^11 after the caller's standardisation
LOGIT_LIMIT_BITS = 12  # |u_bank|, |u_centre| < 2^12, otherwise training has diverged
FRAC_BITS_S = 16  # fixed-point bits of class weights
S_INT_BITS = 8  # class weights < 2^8
MIN_BATCH_ROWS = 32  # no aggregate (gradient, loss) over fewer rows ever leaves a party
ROWS_PER_FEATURE = 4  # batch rows >= 4x the larger party's gradient length
_STATE_VERSION = "hetero-lr-state/1"
_SCORE_STATE_VERSION = "hetero-lr-score-state/1"
_LOG2 = math.log(2.0)

T = TypeVar("T")


class HeteroLRConfigError(ValueError):
    """A hetero-LR setting is unknown, mistyped or out of range; the message names it."""


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------
@dataclass
class HeteroLRConfig:
    """Training settings; both parties must agree on the ``shared_settings`` subset."""

    epochs: int = 10
    batch_size: int = 4096
    learning_rate: float = 0.5
    lr_decay: float = 0.3  # lr(epoch) = learning_rate / (1 + lr_decay * epoch)
    momentum: float = 0.9  # heavy ball: v = momentum v + g; w -= lr v
    l2: float = 1e-3  # not applied to the intercept
    early_stopping_patience: int = 3  # epochs without val improvement > tol; 0 disables
    early_stopping_tol: float = 1e-4
    class_weight: str | None = None  # None or "balanced"
    frac_bits_x: int = 12
    frac_bits_d: int = 24
    key_bits: int = 2048
    insecure_test_key: bool = False
    seed: int = 42  # batch schedule (shared, checked at setup)
    validation_fraction: float = 0.1  # for the caller's split; the protocol receives val rows
    restore_best_weights: bool = True  # on finish, each party keeps its best-val-epoch weights

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise HeteroLRConfigError(f"hetero-LR setting {key!r}={getattr(self, key)!r}: {what}")

        for key in (
            "epochs",
            "batch_size",
            "early_stopping_patience",
            "frac_bits_x",
            "frac_bits_d",
            "key_bits",
            "seed",
        ):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool), key, "must be an integer")
        for key in ("learning_rate", "lr_decay", "momentum", "l2", "early_stopping_tol", "validation_fraction"):
            v = getattr(self, key)
            need(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                key,
                "must be a finite number",
            )
            setattr(self, key, float(v))
        for key in ("insecure_test_key", "restore_best_weights"):
            need(isinstance(getattr(self, key), bool), key, "must be true or false")
        if isinstance(self.class_weight, str) and self.class_weight.lower() in ("", "none"):
            self.class_weight = None
        need(self.class_weight in (None, "balanced"), "class_weight", 'must be absent, "none" or "balanced"')
        need(self.epochs >= 1, "epochs", "must be >= 1")
        need(self.batch_size >= MIN_BATCH_ROWS, "batch_size", f"must be >= {MIN_BATCH_ROWS}")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.lr_decay >= 0, "lr_decay", "must be >= 0")
        need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(self.l2 >= 0, "l2", "must be >= 0")
        need(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0")
        need(self.early_stopping_tol >= 0, "early_stopping_tol", "must be >= 0")
        need(4 <= self.frac_bits_x <= 20, "frac_bits_x", "must be in [4, 20]")
        need(8 <= self.frac_bits_d <= 40, "frac_bits_d", "must be in [8, 40]")
        need(self.seed >= 0, "seed", "must be >= 0")
        need(0 <= self.validation_fraction < 1, "validation_fraction", "must be in [0, 1)")
        need(
            self.key_bits >= MIN_KEY_BITS or self.insecure_test_key,
            "key_bits",
            f"must be >= {MIN_KEY_BITS} (smaller keys only with insecure_test_key = true, in tests)",
        )
        need(self.key_bits >= 512, "key_bits", "must be >= 512 even for tests")

    @classmethod
    def from_section(cls, d: dict[str, Any] | None) -> HeteroLRConfig:
        """Build from a scenario's ``[lr]`` table; unknown keys are an error, not a silent default."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HeteroLRConfigError(f"unknown hetero-LR setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def weighted(self) -> bool:
        return self.class_weight is not None

    def shared_settings(self) -> dict[str, Any]:
        """What both parties must agree on for the schedule and the fixed-point scales to match."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "frac_bits_x": self.frac_bits_x,
            "frac_bits_d": self.frac_bits_d,
            "weighted": self.weighted,
        }

    def learning_rate_at(self, epoch: int) -> float:
        return self.learning_rate / (1.0 + self.lr_decay * epoch)


# ---------------------------------------------------------------------------------------
# schedule and encodings (shared by both parties, pure functions)
# ---------------------------------------------------------------------------------------
def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """``n // batch_size`` batches (at least one): the remainder is spread, never a tiny batch."""
    return max(1, n_rows // batch_size)


def batch_schedule(n_rows: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Row indices (common PSI order) of each batch of ``epoch``: a seeded shuffle split evenly.

    Every batch has between ``batch_size`` and ``2 * batch_size - 1`` rows (or all rows when
    ``n_rows < batch_size``), so no gradient is ever an aggregate over a handful of rows.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n_rows)
    return np.array_split(perm, batches_per_epoch(n_rows, batch_size))


def min_batch_rows(n_rows: int, batch_size: int) -> int:
    return n_rows // batches_per_epoch(n_rows, batch_size)


def required_batch_rows(n_bank_features: int, n_centre_features: int) -> int:
    """Fewest rows a batch may have: a gradient over fewer rows than ~its length reveals residuals."""
    return max(MIN_BATCH_ROWS, ROWS_PER_FEATURE * max(n_bank_features + 1, n_centre_features))


def balanced_class_weights(y01: np.ndarray) -> dict[int, float]:
    """scikit-learn's "balanced": ``n / (2 n_k)`` (mean weight 1 over the training rows)."""
    n = len(y01)
    pos = int(np.sum(y01 == 1))
    if pos == 0 or pos == n:
        raise HeteroLRConfigError("class_weight='balanced' needs both classes in the training labels")
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _exact_matvec(X: np.ndarray, v: np.ndarray) -> list[int]:
    """``X^T v`` exactly as Python ints for int64 ``X`` (|X| < 2^31) and int64 ``v``.

    Vectorised over 16-bit limbs of ``v`` so no int64 sum can overflow for < 2^16 rows per limb.
    """
    X = np.asarray(X, dtype=np.int64)
    rest = np.asarray(v, dtype=np.int64).copy()
    out = [0] * X.shape[1]
    shift = 0
    while rest.size and int(np.abs(rest).max()) >= (1 << 15):
        lo = rest & 0xFFFF
        rest >>= 16
        part = X.T @ lo
        out = [o + (int(p) << shift) for o, p in zip(out, part.tolist())]
        shift += 16
    if rest.size:
        part = X.T @ rest
        out = [o + (int(p) << shift) for o, p in zip(out, part.tolist())]
    return out


def _parse_ciphertexts(pk: PublicKey, data: bytes, count: int, what: str) -> EncryptedVector:
    """``count`` ciphertexts under ``pk``; a wrong length or out-of-range value is refused."""
    width = pk.ciphertext_bytes
    if len(data) != count * width:
        raise ProtocolError(
            f"{what}: expected {count} ciphertexts ({count * width} bytes), got {len(data)} bytes "
            "(wrong length, wrong key size or truncated)"
        )
    try:
        return EncryptedVector.from_bytes(pk, data, validate=True)  # 0 < c < n^2, gcd(c, n) = 1 (batched)
    except PaillierError as exc:
        raise ProtocolError(f"{what}: {exc}") from None


def _encrypt_fresh(pk: PublicKey, values: list[int]) -> EncryptedVector:
    """A few encryptions under a *peer's* key without building its fixed-base table."""
    obf = [gmpy2.powmod(pk.hs, secrets.randbits(DJN_EXPONENT_BITS), pk.nsquare) for _ in values]
    return pk.encrypt(values, obfuscators=obf)


def _mul_cts(pk: PublicKey, a: mpz | None, b: mpz) -> mpz:
    return b if a is None else a * b % pk.nsquare


def _mask_bits(value_bits: int) -> int:
    return value_bits + STAT_SEC_BITS


_KEY_CACHE: OrderedDict[str, PrivateKey] = OrderedDict()
_KEY_CACHE_SIZE = 4


def _private_key(data: bytes, insecure_test_key: bool) -> PrivateKey:
    """The private key in ``data``, reusing this process's key object (and its fixed-base tables).

    Pure optimisation: a restarted party rebuilds its key from state bytes every step, and the
    CRT obfuscator tables cost ~1 s to build at 2048 bits. When the process survives between
    steps (Flower simulation actors, a long-lived ClientApp) the cached object is reused; the
    cache is keyed by a hash of the private key bytes themselves, so only a caller that already
    holds the key can get it back.
    """
    tag = hashlib.sha256(data + bytes([insecure_test_key])).hexdigest()
    key = _KEY_CACHE.get(tag)
    if key is None:
        key = PrivateKey.from_bytes(data, insecure_test_key=insecure_test_key)
        _KEY_CACHE[tag] = key
        while len(_KEY_CACHE) > _KEY_CACHE_SIZE:
            _KEY_CACHE.popitem(last=False)
    else:
        _KEY_CACHE.move_to_end(tag)
    return key


def _digest(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _as_labels(y: np.ndarray | None, n: int, who: str, what: str) -> np.ndarray | None:
    """Labels as ±1 float64 (accepts 0/1 or -1/+1)."""
    if y is None:
        return None
    y = np.asarray(y).ravel()
    if y.shape[0] != n:
        raise ValueError(f"{who}: {what} has {y.shape[0]} labels for {n} rows")
    vals = set(np.unique(y).tolist())
    if vals <= {0, 1}:
        return np.where(y == 1, 1.0, -1.0)
    if vals <= {-1, 1}:
        return y.astype(np.float64)
    raise ValueError(f"{who}: {what} must be 0/1 (or -1/+1), found values {sorted(vals)[:5]}")


# ---------------------------------------------------------------------------------------
# restartable state (wire-encoded: a node never unpickles anything)
# ---------------------------------------------------------------------------------------
@dataclass
class _LRState:
    version: str
    role: str
    name: str
    peer: str
    config: dict
    data_digest: str
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


# ---------------------------------------------------------------------------------------
# the two parties
# ---------------------------------------------------------------------------------------
class _HeteroLRParty(Party):
    """Shared machinery: setup, schedule, masks, optimiser, state, checked message handling."""

    role: str = ""
    peer_role: str = ""

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
        self.X = as_features(X_train, f"{self.role} {name!r}", "X_train")
        if self.X.shape[0] == 0:
            raise ValueError(f"{self.role} {name!r}: X_train has no rows")
        self.X_val = as_features(X_val, f"{self.role} {name!r}", "X_val", self.X.shape[1])
        self._fp_x = FixedPoint(config.frac_bits_x, X_INT_BITS)
        self.X_int = self._encode_features(self.X, "X_train")
        self.X_val_int = None if self.X_val is None else self._encode_features(self.X_val, "X_val")
        self._fp_d_bank = FixedPoint(config.frac_bits_d, LOGIT_LIMIT_BITS - 2 + 1)  # |0.25u - 0.5y| < 2^11
        self._fp_d_centre = FixedPoint(config.frac_bits_d, LOGIT_LIMIT_BITS - 2)  # |0.25u| < 2^10
        self._fp_u = FixedPoint(config.frac_bits_x, LOGIT_LIMIT_BITS)
        self._sk: PrivateKey | None = None
        self._peer_pk: PublicKey | None = None
        self.s = self._new_state()

    # -- construction helpers -----------------------------------------------------------
    def _encode_features(self, X: np.ndarray, what: str) -> np.ndarray:
        try:
            return self._fp_x.encode(X)
        except EncodingError as exc:
            raise ValueError(
                f"{self.role} {self.name!r}: {what}: {exc} (features must be standardised; |x| < 2^{X_INT_BITS})"
            ) from None

    @property
    def n_train(self) -> int:
        return self.X.shape[0]

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else self.X_val.shape[0]

    @property
    def n_weights(self) -> int:
        return self.X.shape[1]

    def _data_digest(self) -> str:
        return _digest(self.X, self.X_val)

    def _new_state(self) -> _LRState:
        zeros = np.zeros(self.n_weights)
        return _LRState(
            version=_STATE_VERSION,
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

    # -- restartability ------------------------------------------------------------------
    def to_state(self) -> bytes:
        """Everything needed to continue (node-local: contains the private key and masks)."""
        return wire.encode(self.s)

    def _restore(self, state: bytes) -> None:
        try:
            s = wire.decode(state, _LRState)
        except wire.WireError as exc:
            raise ProtocolError(f"{self.role} state cannot be restored: {exc}") from None
        if s.version != _STATE_VERSION or s.role != self.role:
            raise ProtocolError(f"state is for {s.role!r} ({s.version}), not a {self.role} party ({_STATE_VERSION})")
        if s.data_digest != self._data_digest():
            raise ProtocolError(
                f"{self.role} {s.name!r}: the data given to from_state is not the data this "
                "party was trained on (digest mismatch)"
            )
        s.weights = np.asarray(s.weights, dtype=np.float64)
        s.velocity = np.asarray(s.velocity, dtype=np.float64)
        s.best_weights = np.asarray(s.best_weights, dtype=np.float64)
        self.s = s
        if s.private_key:
            self._sk = _private_key(s.private_key, self.config.insecure_test_key)
        if s.peer_key:
            self._peer_pk = PublicKey.from_bytes(s.peer_key, insecure_test_key=self.config.insecure_test_key)

    # -- public surface -----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.s.phase == "done"

    @property
    def weights(self) -> np.ndarray:
        return self.s.weights.copy()

    @property
    def history(self) -> list[dict]:
        return [dict(h) for h in self.s.history]

    @property
    def public_key(self) -> PublicKey | None:
        return None if self._sk is None else self._sk.public_key

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
        return batch_schedule(self.n_train, self.config.batch_size, self.config.seed, r // self._nb)[r % self._nb]

    def _is_record_round(self, r: int) -> bool:
        """The first round after an epoch's last batch: the epoch is evaluated in it."""
        return r > 0 and r % self._nb == 0

    def _is_last_batch_of_epoch(self, r: int) -> bool:
        return r < self._total_rounds and r % self._nb == self._nb - 1

    # -- errors ---------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.role} {self.name!r} at step {self.s.step} (round {self.s.round}, phase {self.s.phase})"

    def _fail(self, what: str) -> ProtocolError:
        return ProtocolError(f"{self._where()}: {what}")

    def _decode(self, env: Envelope, cls: type[T]) -> T:
        try:
            return wire.decode(env.payload, cls)
        except wire.WireError as exc:
            raise self._fail(f"bad message from {env.sender!r}: {exc}") from None

    def _check_round(self, msg: Any) -> None:
        if msg.round != self.s.round:
            raise self._fail(f"{type(msg).__name__} is for round {msg.round}, expected round {self.s.round}")

    def _check_fingerprint(self, msg: Any, pk: PublicKey) -> None:
        if msg.key_fingerprint != pk.fingerprint:
            raise self._fail(
                f"{type(msg).__name__} was encrypted under key {msg.key_fingerprint}, "
                f"expected {pk.fingerprint} (wrong key)"
            )

    def _cts(self, pk: PublicKey, data: bytes, count: int, what: str) -> EncryptedVector:
        try:
            return _parse_ciphertexts(pk, data, count, what)
        except (ProtocolError, PaillierError) as exc:
            raise self._fail(str(exc)) from None

    # -- the step machine ------------------------------------------------------------------
    def start(self) -> list[Envelope]:
        if self.s.phase != "init":
            raise self._fail("start() called twice")
        _, sk = generate_keypair(self.config.key_bits, insecure_test_key=self.config.insecure_test_key)
        self.s.private_key = sk.to_bytes()
        self._sk = _private_key(self.s.private_key, self.config.insecure_test_key)
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
        if len(inbox) != 1 or inbox[0].sender != self.peer:
            senders = [e.sender for e in inbox]
            raise self._fail(f"expected exactly one message from {self.peer!r}, got {len(inbox)} from {senders}")
        env = inbox[0]
        try:
            handler = {
                "hello_sent": self._on_hello,
                "partials_sent": self._on_partials,
                "gradient_sent": self._on_masked_gradient,
                "plain_sent": self._on_masked_plain,
                "finishing": self._on_final_plain,
            }.get(self.s.phase)
            if handler is None:
                raise self._fail(
                    f"received {env.kind if _is_wire(env) else 'a message'} but the party is "
                    f"{'finished' if self.finished else 'not started'}"
                )
            return handler(env)
        except ProtocolError:
            raise
        except (PaillierError, EncodingError) as exc:
            raise self._fail(str(exc)) from None

    def _on_hello(self, env: Envelope) -> list[Envelope]:
        hello = self._decode(env, LRHello)
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
        if peer_pk == self._sk.public_key:
            raise self._fail("peer announced our own public key")
        if not isinstance(hello.n_features, int) or hello.n_features < 1:
            raise self._fail(f"peer announced {hello.n_features!r} features")
        nb_feat, nc_feat = (
            (self._raw_features(), hello.n_features) if self.role == BANK else (hello.n_features, self._raw_features())
        )
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
        self._peer_pk = peer_pk
        self.s.peer_key = hello.public_key
        self.s.peer_features = hello.n_features
        self.s.round = 0
        return self._send_partials()

    def _on_partials(self, env: Envelope) -> list[Envelope]:
        raise NotImplementedError

    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        raise NotImplementedError

    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        raise NotImplementedError

    def _on_final_plain(self, env: Envelope) -> list[Envelope]:
        raise self._fail("unexpected message while finishing")

    def _send_partials(self) -> list[Envelope]:
        raise NotImplementedError

    def _raw_features(self) -> int:
        return self.X.shape[1]

    # -- masks and optimiser ---------------------------------------------------------------
    def _gradient_value_bits(self, n_rows: int) -> int:
        """Bound on |X^T (s d)| (fixed-point integers) for masking the gradient computed here."""
        x_bits = int(np.abs(self.X_int).max()).bit_length() if self.X_int.size else 1
        d_bits = self.config.frac_bits_d + LOGIT_LIMIT_BITS
        s_bits = FRAC_BITS_S + S_INT_BITS if self.config.weighted else 0
        return n_rows.bit_length() + x_bits + d_bits + s_bits + 1

    def _mask_gradient(self, enc: EncryptedVector, n_rows: int) -> EncryptedVector:
        """``enc + Enc(R)`` with fresh randomness; R is kept in the state to unmask the reply."""
        bits = _mask_bits(self._gradient_value_bits(n_rows))
        if bits + 2 >= self._peer_pk.bits:
            raise self._fail(f"a {bits}-bit mask does not fit the peer's {self._peer_pk.bits}-bit key")
        masks = [secrets.randbits(bits) for _ in range(len(enc))]
        self.s.masks = masks
        return enc + _encrypt_fresh(self._peer_pk, masks)

    def _unmask(self, values: list, n_rows: int) -> np.ndarray:
        """Own gradient (float) from the peer's decryption of our masked vector."""
        if len(values) != len(self.s.masks):
            raise self._fail(f"masked gradient has {len(values)} values, expected {len(self.s.masks)}")
        bound = 1 << self._gradient_value_bits(n_rows)
        grads = []
        for i, (v, r) in enumerate(zip(values, self.s.masks)):
            if not isinstance(v, int):
                raise self._fail(f"masked gradient value {i} is not an integer")
            g = v - r
            if abs(g) >= bound:
                raise self._fail(
                    f"gradient {i} decrypted out of range: the peer decrypted with the wrong key, "
                    "or a ciphertext was corrupted"
                )
            grads.append(g)
        self.s.masks = []
        scale_bits = self.config.frac_bits_x + self.config.frac_bits_d + (FRAC_BITS_S if self.config.weighted else 0)
        return np.array([g / 2.0**scale_bits for g in grads], dtype=np.float64) / n_rows

    def _l2_mask(self) -> np.ndarray:
        return np.ones(self.n_weights)

    def _apply_update(self, grad: np.ndarray, epoch: int) -> None:
        cfg = self.config
        g = grad + cfg.l2 * self.s.weights * self._l2_mask()
        self.s.velocity = cfg.momentum * self.s.velocity + g
        self.s.weights = self.s.weights - cfg.learning_rate_at(epoch) * self.s.velocity

    def _finish(self) -> None:
        if self.config.restore_best_weights and self.s.best_weights.size:
            self.s.weights = self.s.best_weights.copy()
        self.s.phase = "done"
        self.s.masks = []
        log.info("%s %r finished after %d epochs", self.role, self.name, len(self.s.history))

    def _emit(self, entry: dict) -> None:
        self.s.history.append(entry)
        if self.on_epoch is not None:
            self.on_epoch(dict(entry))


def _is_wire(env: Envelope) -> bool:
    try:
        _ = env.kind
        return True
    except wire.WireError:
        return False


class BankLR(_HeteroLRParty):
    """The guest: labels, its standardised features (the intercept column is added here)."""

    role = BANK
    peer_role = CENTRE

    def __init__(
        self,
        name: str,
        peer: str,
        X_train: np.ndarray,
        y_train: np.ndarray,
        config: HeteroLRConfig,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> None:
        X_train = as_features(X_train, f"bank {name!r}", "X_train")
        X_val = as_features(X_val, f"bank {name!r}", "X_val", X_train.shape[1])
        self.n_raw = X_train.shape[1]
        self.y = _as_labels(y_train, X_train.shape[0], f"bank {name!r}", "y_train")
        if (X_val is None) != (y_val is None):
            raise ValueError(f"bank {name!r}: give both X_val and y_val, or neither")
        self.y_val = _as_labels(y_val, 0 if X_val is None else X_val.shape[0], f"bank {name!r}", "y_val")
        ones = np.ones((X_train.shape[0], 1))
        Xa = np.hstack([X_train, ones])
        Xva = None if X_val is None else np.hstack([X_val, np.ones((X_val.shape[0], 1))])
        if config.weighted:
            cw = balanced_class_weights((self.y > 0).astype(int))
            self.class_weights = cw
            fp_s = FixedPoint(FRAC_BITS_S, S_INT_BITS)
            self.s_int = fp_s.encode(np.where(self.y > 0, cw[1], cw[0]))
            self.s_val_int = None if self.y_val is None else fp_s.encode(np.where(self.y_val > 0, cw[1], cw[0]))
        else:
            self.class_weights = None
            self.s_int = self.s_val_int = None
        super().__init__(name, peer, Xa, config, X_val=Xva, on_epoch=on_epoch)

    @classmethod
    def from_state(
        cls,
        state: bytes,
        X_train: np.ndarray,
        y_train: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> BankLR:
        try:
            s = wire.decode(state, _LRState)
        except wire.WireError as exc:
            raise ProtocolError(f"bank state cannot be restored: {exc}") from None
        party = cls(
            s.name, s.peer, X_train, y_train, HeteroLRConfig(**s.config), X_val=X_val, y_val=y_val, on_epoch=on_epoch
        )
        party._restore(state)
        return party

    def _data_digest(self) -> str:
        return _digest(self.X, self.X_val, self.y, self.y_val)

    def _raw_features(self) -> int:
        return self.n_raw

    def _l2_mask(self) -> np.ndarray:
        m = np.ones(self.n_weights)
        m[-1] = 0.0  # no penalty on the intercept
        return m

    # -- local computations --------------------------------------------------------------
    def _residual_int(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u_bank, fixed-point ``0.25 u_bank - 0.5 y``) for ``rows`` at the current weights."""
        u = self.X[rows] @ self.s.weights
        if not np.all(np.abs(u) < 2.0**LOGIT_LIMIT_BITS):
            raise self._fail(
                "the bank's partial scores left the fixed-point range: training diverged (lower learning_rate)"
            )
        return u, self._fp_d_bank.encode(0.25 * u - 0.5 * self.y[rows])

    def _own_loss(self, u: np.ndarray, y: np.ndarray, s_int: np.ndarray | None) -> float:
        terms = _LOG2 - 0.5 * y * u + 0.125 * u * u
        if s_int is not None:
            terms = terms * (s_int / 2.0**FRAC_BITS_S)
        return float(terms.sum())

    # -- phase A --------------------------------------------------------------------------
    def _send_partials(self) -> list[Envelope]:
        r = self.s.round
        rows = self._batch(r)
        sk = self._sk
        residual = weights = val_residual = val_weights = b""
        if rows is not None:
            if r % self._nb == 0:
                self.s.own_loss = 0.0
                self.s.epoch_started = time.time()
            u, d = self._residual_int(rows)
            s_rows = None if self.s_int is None else self.s_int[rows]
            self.s.own_loss += self._own_loss(u, self.y[rows], s_rows)
            if s_rows is not None:
                residual = sk.encrypt(s_rows * d).to_bytes()
                weights = sk.encrypt(s_rows).to_bytes()
            else:
                residual = sk.encrypt(d).to_bytes()
        if self._is_record_round(r) and self.n_val:
            u = self.X_val @ self.s.weights
            if not np.all(np.abs(u) < 2.0**LOGIT_LIMIT_BITS):
                raise self._fail("validation partial scores left the fixed-point range: training diverged")
            d = self._fp_d_bank.encode(0.25 * u - 0.5 * self.y_val)
            if self.s_val_int is not None:
                val_residual = sk.encrypt(self.s_val_int * d).to_bytes()
                val_weights = sk.encrypt(self.s_val_int).to_bytes()
            else:
                val_residual = sk.encrypt(d).to_bytes()
        self.s.phase = "partials_sent"
        msg = BankPartials(
            round=r,
            key_fingerprint=sk.public_key.fingerprint,
            residual=residual,
            sample_weights=weights,
            val_residual=val_residual,
            val_sample_weights=val_weights,
        )
        return [self.send(self.peer, msg)]

    # -- phase B --------------------------------------------------------------------------
    def _on_partials(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, CentrePartials)
        self._check_round(msg)
        rows = self._batch(self.s.round)
        pk = self._peer_pk
        if rows is None:
            if msg.scores:
                raise self._fail("centre sent partial scores for a round without a batch")
            gradient = b""
        else:
            self._check_fingerprint(msg, pk)
            enc_c = self._cts(pk, msg.scores, len(rows), "centre partial scores")
            _, d = self._residual_int(rows)
            X = self.X_int[rows]
            if self.s_int is None:
                groups = [(None, np.arange(len(rows)))]
            else:
                s_rows = self.s_int[rows]
                groups = [(int(v), np.flatnonzero(s_rows == v)) for v in np.unique(s_rows)]
            enc_total: list[mpz] | None = None
            plain_total = [0] * X.shape[1]
            for weight, idx in groups:
                # X^T d = X^T Enc(0.25 u_c) * g^(X^T d_bank): the bank's own term stays in the clear
                sub = enc_c if weight is None else enc_c[idx]
                Xs, ds = (X, d) if weight is None else (X[idx], d[idx])
                part = sub.dot(Xs).ciphertexts
                plain = _exact_matvec(Xs, ds)
                if weight is not None:
                    part = [gmpy2.powmod(c, weight, pk.nsquare) for c in part]
                    plain = [p * weight for p in plain]
                enc_total = part if enc_total is None else [_mul_cts(pk, a, b) for a, b in zip(enc_total, part)]
                plain_total = [a + b for a, b in zip(plain_total, plain)]
            enc = EncryptedVector(pk, enc_total).add_plain(plain_total)
            gradient = self._mask_gradient(enc, len(rows)).to_bytes()
        self.s.phase = "gradient_sent"
        return [
            self.send(
                self.peer, BankMaskedGradient(round=self.s.round, key_fingerprint=pk.fingerprint, gradient=gradient)
            )
        ]

    # -- phase C --------------------------------------------------------------------------
    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, CentreMaskedGradient)
        self._check_round(msg)
        r = self.s.round
        rows = self._batch(r)
        sk = self._sk
        pk = sk.public_key
        if msg.gradient or msg.train_loss or msg.val_loss:
            self._check_fingerprint(msg, pk)
        n_grad = 0 if rows is None else self.s.peer_features
        masked = self._cts(pk, msg.gradient, n_grad, "centre masked gradient")
        loss_scale = self.config.frac_bits_x + self.config.frac_bits_d + (FRAC_BITS_S if self.config.weighted else 0)
        if self._is_last_batch_of_epoch(r):
            cross = self._decrypt_aggregate(self._cts(pk, msg.train_loss, 1, "train loss"), self.n_train, loss_scale)
            self.s.pending_train_loss = (self.s.own_loss + cross) / self.n_train
        elif msg.train_loss:
            raise self._fail("centre sent a training-loss ciphertext outside an epoch's last batch")
        val_loss = None
        if self._is_record_round(r) and self.n_val:
            cross = self._decrypt_aggregate(self._cts(pk, msg.val_loss, 1, "validation loss"), self.n_val, loss_scale)
            u = self.X_val @ self.s.weights
            val_loss = (self._own_loss(u, self.y_val, self.s_val_int) + cross) / self.n_val
        elif msg.val_loss:
            raise self._fail("centre sent a validation-loss ciphertext in a round without validation")
        improved = finish = False
        if self._is_record_round(r):
            improved, finish = self._record_epoch(r // self._nb - 1, val_loss)
        if finish:
            self._finish_bank()
            return [self.send(self.peer, BankMaskedPlain(round=r, values=[], improved=improved, finish=True))]
        values = [int(v) for v in sk.decrypt(masked)] if n_grad else []
        self.s.phase = "plain_sent"
        return [self.send(self.peer, BankMaskedPlain(round=r, values=values, improved=improved, finish=False))]

    def _decrypt_aggregate(self, vec: EncryptedVector, n_rows: int, scale_bits: int) -> float:
        (v,) = self._sk.decrypt(vec)
        bound = 1 << (scale_bits + 2 * LOGIT_LIMIT_BITS + n_rows.bit_length() + 8)
        if abs(int(v)) >= bound:
            raise self._fail("loss aggregate decrypted out of range: ciphertext under the wrong key or corrupted")
        return int(v) / 2.0**scale_bits

    def _record_epoch(self, epoch: int, val_loss: float | None) -> tuple[bool, bool]:
        cfg = self.config
        improved = False
        if val_loss is None:
            improved = True  # without validation the latest weights are the ones to keep
            self.s.wait = 0
        elif self.s.best_val is None or val_loss < self.s.best_val - cfg.early_stopping_tol:
            improved = True
            self.s.best_val = float(val_loss)
            self.s.wait = 0
        else:
            self.s.wait += 1
        if improved:
            self.s.best_epoch = epoch
            self.s.best_weights = self.s.weights.copy()
        stop_early = (
            val_loss is not None and cfg.early_stopping_patience > 0 and self.s.wait >= cfg.early_stopping_patience
        )
        finish = epoch >= cfg.epochs - 1 or stop_early
        entry = {
            "epoch": epoch,
            "train_loss": self.s.pending_train_loss,
            "val_loss": None if val_loss is None else float(val_loss),
            "seconds": time.time() - self.s.epoch_started,
            "learning_rate": cfg.learning_rate_at(epoch),
            "improved": improved,
        }
        self.s.pending_train_loss = None
        log.info(
            "bank %r epoch %d: train %.5f val %s (%s)",
            self.name,
            epoch,
            entry["train_loss"],
            "-" if val_loss is None else f"{val_loss:.5f}",
            "improved" if improved else f"wait {self.s.wait}",
        )
        self._emit(entry)
        if stop_early and epoch < cfg.epochs - 1:
            log.info("bank %r: early stop after epoch %d (best epoch %d)", self.name, epoch, self.s.best_epoch)
        return improved, finish

    def _finish_bank(self) -> None:
        # the centre's reply to this round is still in flight: accept it, then be done
        if self.config.restore_best_weights and self.s.best_weights.size:
            self.s.weights = self.s.best_weights.copy()
        self.s.masks = []
        self.s.phase = "finishing"

    def _on_final_plain(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, CentreMaskedPlain)
        self._check_round(msg)
        self.s.phase = "done"
        log.info("bank %r finished after %d epochs (best epoch %d)", self.name, len(self.s.history), self.s.best_epoch)
        return []

    # -- phase D --------------------------------------------------------------------------
    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, CentreMaskedPlain)
        self._check_round(msg)
        r = self.s.round
        rows = self._batch(r)
        if rows is None:
            if msg.values:
                raise self._fail("centre returned gradient values for a round without a batch")
        else:
            self._apply_update(self._unmask(list(msg.values), len(rows)), r // self._nb)
        self.s.round += 1
        return self._send_partials()

    # -- results --------------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        w = self.s.weights
        return {
            "role": BANK,
            "n_features": self.n_raw,
            "coef": w[:-1].tolist(),
            "intercept": float(w[-1]),
            "weights": w.tolist(),
            "best_epoch": self.s.best_epoch,
            "epochs_run": len(self.s.history),
            "class_weights": self.class_weights,
        }

    def partial_scores(self, X_new: np.ndarray) -> np.ndarray:
        """``X_new @ coef + intercept`` (local)."""
        X_new = as_features(X_new, f"bank {self.name!r}", "X_new", self.n_raw)
        return X_new @ self.s.weights[:-1] + self.s.weights[-1]


class CentreLR(_HeteroLRParty):
    """The host: public features only; never sees labels, residuals or the bank's gradient."""

    role = CENTRE
    peer_role = BANK

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
        super().__init__(name, peer, X_train, config, X_val=X_val, on_epoch=on_epoch)

    @classmethod
    def from_state(
        cls,
        state: bytes,
        X_train: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        on_epoch: Callable[[dict], None] | None = None,
    ) -> CentreLR:
        try:
            s = wire.decode(state, _LRState)
        except wire.WireError as exc:
            raise ProtocolError(f"credit centre state cannot be restored: {exc}") from None
        party = cls(s.name, s.peer, X_train, HeteroLRConfig(**s.config), X_val=X_val, on_epoch=on_epoch)
        party._restore(state)
        return party

    def _scores(self, X: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        u = X @ self.s.weights
        if not np.all(np.abs(u) < 2.0**LOGIT_LIMIT_BITS):
            raise self._fail(f"the centre's {what} partial scores left the fixed-point range: training diverged")
        return u, self._fp_u.encode(u)

    # -- phase A --------------------------------------------------------------------------
    def _send_partials(self) -> list[Envelope]:
        r = self.s.round
        rows = self._batch(r)
        scores = b""
        if rows is not None:
            if r % self._nb == 0:
                self.s.loss_acc = b""
                self.s.epoch_started = time.time()
            u = self.X[rows] @ self.s.weights
            if not np.all(np.abs(u) < 2.0**LOGIT_LIMIT_BITS):
                raise self._fail("the centre's partial scores left the fixed-point range: training diverged")
            scores = self._sk.encrypt(self._fp_d_centre.encode(0.25 * u)).to_bytes()
        self.s.phase = "partials_sent"
        return [
            self.send(
                self.peer, CentrePartials(round=r, key_fingerprint=self._sk.public_key.fingerprint, scores=scores)
            )
        ]

    # -- phase B --------------------------------------------------------------------------
    def _cross_loss(
        self, enc_sd: EncryptedVector, enc_s: EncryptedVector | None, u: np.ndarray, u_int: np.ndarray
    ) -> mpz:
        """``Enc_b(sum s u_c d_bank + 0.125 sum s u_c^2)`` at scale 2^(fx+fd[+fs]) (not rerandomised)."""
        pk = self._peer_pk
        scale = self.config.frac_bits_x + self.config.frac_bits_d
        quad = np.rint(np.ldexp(0.125 * u * u, scale))
        if enc_s is None:
            ct = multi_exponentiate(enc_sd.ciphertexts, u_int, pk.nsquare)
            return ct * pk.encode_plain(mpz(int(quad.sum()))) % pk.nsquare
        if np.abs(quad).max(initial=0) >= 2.0**62:
            raise self._fail("partial scores too large for the weighted loss term: training diverged")
        exps = np.concatenate([u_int, quad.astype(np.int64)])
        return multi_exponentiate(enc_sd.ciphertexts + enc_s.ciphertexts, exps, pk.nsquare)

    def _on_partials(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, BankPartials)
        self._check_round(msg)
        r = self.s.round
        rows = self._batch(r)
        pk = self._peer_pk
        weighted = self.config.weighted
        record_val = self._is_record_round(r) and self.n_val > 0
        if rows is not None or record_val:
            self._check_fingerprint(msg, pk)
        n = 0 if rows is None else len(rows)
        enc_d = self._cts(pk, msg.residual, n, "bank residuals")
        enc_s = self._cts(pk, msg.sample_weights, n if weighted else 0, "bank sample weights")
        nv = self.n_val if record_val else 0
        enc_vd = self._cts(pk, msg.val_residual, nv, "bank validation residuals")
        enc_vs = self._cts(pk, msg.val_sample_weights, nv if weighted else 0, "bank validation sample weights")
        gradient = train_loss = val_loss = b""
        if rows is not None:
            X = self.X_int[rows]
            u, u_int = self._scores(self.X[rows], "batch")
            c = self._fp_d_centre.encode(0.25 * u)
            if not weighted:
                # one multi-exponentiation: [X_c | u_c] over Enc(d_bank); the centre's own term in the clear
                out = enc_d.dot(np.hstack([X, u_int[:, None]])).ciphertexts
                grad = EncryptedVector(pk, out[:-1]).add_plain(_exact_matvec(X, c))
                quad = int(np.rint(np.ldexp(0.125 * u * u, self.config.frac_bits_x + self.config.frac_bits_d)).sum())
                loss_ct = out[-1] * pk.encode_plain(mpz(quad)) % pk.nsquare
            else:
                # Enc(s d) = Enc(s d_bank) * Enc(s)^c row by row (the centre never learns s)
                nsq = pk.nsquare
                sd = [
                    a * gmpy2.powmod(b, int(ci), nsq) % nsq
                    for a, b, ci in zip(enc_d.ciphertexts, enc_s.ciphertexts, c.tolist())
                ]
                grad = EncryptedVector(pk, sd).dot(X)
                loss_ct = self._cross_loss(enc_d, enc_s, u, u_int)
            gradient = self._mask_gradient(grad, n).to_bytes()
            acc = mpz(int.from_bytes(self.s.loss_acc, "big")) if self.s.loss_acc else None
            acc = _mul_cts(pk, acc, loss_ct)
            if self._is_last_batch_of_epoch(r):
                train_loss = (EncryptedVector(pk, [acc]) + _encrypt_fresh(pk, [0])).to_bytes()  # rerandomised
                self.s.loss_acc = b""
            else:
                self.s.loss_acc = int(acc).to_bytes(pk.ciphertext_bytes, "big")
        if record_val:
            u, u_int = self._scores(self.X_val, "validation")
            ct = self._cross_loss(enc_vd, enc_vs if weighted else None, u, u_int)
            val_loss = (EncryptedVector(pk, [ct]) + _encrypt_fresh(pk, [0])).to_bytes()
        self.s.phase = "gradient_sent"
        return [
            self.send(
                self.peer,
                CentreMaskedGradient(
                    round=r, key_fingerprint=pk.fingerprint, gradient=gradient, train_loss=train_loss, val_loss=val_loss
                ),
            )
        ]

    # -- phase C --------------------------------------------------------------------------
    def _on_masked_gradient(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, BankMaskedGradient)
        self._check_round(msg)
        rows = self._batch(self.s.round)
        n_grad = 0 if rows is None else self.s.peer_features + 1
        if n_grad:
            self._check_fingerprint(msg, self._sk.public_key)
        masked = self._cts(self._sk.public_key, msg.gradient, n_grad, "bank masked gradient")
        values = [int(v) for v in self._sk.decrypt(masked)] if n_grad else []
        self.s.phase = "plain_sent"
        return [self.send(self.peer, CentreMaskedPlain(round=self.s.round, values=values))]

    # -- phase D --------------------------------------------------------------------------
    def _on_masked_plain(self, env: Envelope) -> list[Envelope]:
        msg = self._decode(env, BankMaskedPlain)
        self._check_round(msg)
        r = self.s.round
        rows = self._batch(r)
        record = self._is_record_round(r)
        if (msg.improved or msg.finish) and not record:
            raise self._fail("bank sent training control outside an epoch boundary")
        if record:
            if msg.improved:
                self.s.best_weights = self.s.weights.copy()
            self._emit(
                {
                    "epoch": r // self._nb - 1,
                    "seconds": time.time() - self.s.epoch_started,
                    "improved": bool(msg.improved),
                }
            )
        if msg.finish:
            self._finish()
            return []
        if rows is None:
            raise self._fail("bank did not finish after the last epoch")
        self._apply_update(self._unmask(list(msg.values), len(rows)), r // self._nb)
        self.s.round += 1
        return self._send_partials()

    # -- results --------------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        w = self.s.weights
        return {
            "role": CENTRE,
            "n_features": self.n_weights,
            "coef": w.tolist(),
            "weights": w.tolist(),
            "epochs_run": len(self.s.history),
        }

    def partial_scores(self, X_new: np.ndarray) -> np.ndarray:
        """``X_new @ w_centre`` (local; leaves the node only through the scoring protocol)."""
        X_new = as_features(X_new, f"credit centre {self.name!r}", "X_new", self.n_weights)
        return X_new @ self.s.weights


# ---------------------------------------------------------------------------------------
# scoring: the bank asks the centre for partial scores of aligned rows
# ---------------------------------------------------------------------------------------
@dataclass
class _ScoreState:
    version: str
    role: str
    name: str
    peer: str
    weights: Any
    phase: str
    rows: Any
    scores: Any


class _ScoringParty(Party):
    role = ""

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
        self.s = _ScoreState(_SCORE_STATE_VERSION, self.role, name, peer, w, "init", np.zeros(0, np.int64), np.zeros(0))

    def to_state(self) -> bytes:
        return wire.encode(self.s)

    def _restore(self, state: bytes) -> None:
        s = wire.decode(state, _ScoreState)
        if s.version != _SCORE_STATE_VERSION or s.role != self.role:
            raise ProtocolError(f"state is not a {self.role} scoring state")
        self.s = s

    @property
    def finished(self) -> bool:
        return self.s.phase == "done"

    def _fail(self, what: str) -> ProtocolError:
        return ProtocolError(f"{self.role} scorer {self.name!r} (phase {self.s.phase}): {what}")

    def _one(self, inbox: list[Envelope]) -> Envelope:
        if len(inbox) != 1 or inbox[0].sender != self.peer:
            raise self._fail(f"expected one message from {self.peer!r}, got {[e.sender for e in inbox]}")
        return inbox[0]


class BankScorer(_ScoringParty):
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

    @classmethod
    def from_state(cls, state: bytes, X_bank: np.ndarray) -> BankScorer:
        s = wire.decode(state, _ScoreState)
        party = cls(s.name, s.peer, s.weights, X_bank, s.rows)
        party._restore(state)
        return party

    def start(self) -> list[Envelope]:
        self.s.phase = "requested"
        return [self.send(self.peer, ScoreRequest(protocol=PROTOCOL_ID, rows=np.asarray(self.s.rows, np.int64)))]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one(inbox)
        if self.s.phase != "requested":
            raise self._fail("unexpected message")
        try:
            msg = wire.decode(env.payload, PartialScores)
        except wire.WireError as exc:
            raise self._fail(f"bad message: {exc}") from None
        u_c = np.asarray(msg.scores, dtype=np.float64)
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


class CentreScorer(_ScoringParty):
    """Answers one :class:`ScoreRequest` with its partial scores (the documented scoring leak)."""

    role = CENTRE

    @classmethod
    def from_state(cls, state: bytes, X_centre: np.ndarray) -> CentreScorer:
        s = wire.decode(state, _ScoreState)
        party = cls(s.name, s.peer, s.weights, X_centre)
        party._restore(state)
        return party

    def start(self) -> list[Envelope]:
        self.s.phase = "waiting"
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        env = self._one(inbox)
        if self.s.phase not in ("init", "waiting"):
            raise self._fail("unexpected message")
        try:
            msg = wire.decode(env.payload, ScoreRequest)
        except wire.WireError as exc:
            raise self._fail(f"bad message: {exc}") from None
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
        return [self.send(self.peer, PartialScores(protocol=PROTOCOL_ID, scores=u.astype(np.float64)))]
