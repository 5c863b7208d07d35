"""Joint inference: a bank scores new applicants with the credit centre's partial scores, by USCC.

After training, each party holds only its own model part. To score an applicant the bank needs
the centre's contribution for that enterprise, and the centre finds the enterprise by its
unified social credit code (USCC). One batch of applicants is one exchange::

    start   centre -> bank   InferenceKey       ephemeral X25519 public key
    step 1  bank -> centre   InferenceRequest   sealed: purpose, model type, consented USCCs
    step 2  centre -> bank   InferencePartials  sealed: found mask, partial scores / direction bits
    step 3  bank             sigmoid(u_bank + u_centre) per found applicant

* Consent is the bank's: the caller passes one refusal reason (or ``None``) per applicant, from
  the bank's consent registry for the run's purpose; refused applicants are never sent.
* The centre answers for the enterprises it holds and reports the others as *not found* (not an
  error), and refuses a request whose purpose it does not serve (default: ``loan_decision``).
* Request and reply are sealed with ChaCha20-Poly1305 under keys from an X25519 exchange between
  the two parties, so the relaying coordinator sees only sizes and hashes: no USCC, no score.
  Keys are fresh per batch, and each key seals exactly one message.
* Models: hetero-LR (the centre returns ``u_c = X_c w_c``) and SecureBoost (the centre returns,
  like ``"cross"`` scoring, its left/right bit for every found applicant at every host split the
  bank's trees use; the bank walks the trees).

What each side learns is in ``docs/protocols/inference.md``. Parties are restartable
(:mod:`protocols.common.party`): state holds keys and counters, the caller hands data back on restore.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocols.common import wire
from protocols.common.party import Envelope, Party, ProtocolError
from protocols.secureboost.model import ModelError, SecureBoostGuestModel, SecureBoostHostModel

PROTOCOL = "fedcredit-inference/1"
USCC_LEN = 18
MODEL_TYPES = ("hetero_lr", "secureboost")
ACCEPTED_PURPOSES = ("loan_decision",)
SCORED = "scored"
UNKNOWN = "unknown_at_centre"
REFUSED_PREFIX = "refused_consent:"
_NONCE = bytes(12)  # every key seals exactly one message
_STATE_VERSION = "inference-state/1"


class InferenceError(ProtocolError):
    """A party cannot accept an inference message, model or input; the message says why."""


# -- messages (what the relay carries) ------------------------------------------------------


@dataclass
class InferenceKey:
    """Centre -> bank: the centre's ephemeral X25519 public key for this batch."""

    protocol: str
    session: str
    batch: int
    public_key: bytes


@dataclass
class InferenceRequest:
    """Bank -> centre: its ephemeral public key and the sealed :class:`RequestBody`."""

    protocol: str
    session: str
    batch: int
    public_key: bytes
    sealed: bytes


@dataclass
class InferencePartials:
    """Centre -> bank: the sealed :class:`PartialsBody`."""

    protocol: str
    session: str
    batch: int
    sealed: bytes


# -- sealed bodies (only the two parties ever see these) ------------------------------------


@dataclass
class RequestBody:
    """What the bank asks: ``usccs`` is ``count * 18`` ASCII bytes (consented applicants only)."""

    purpose: str
    model_type: str
    count: int
    usccs: bytes
    split_ids: Any  # uint64 host split ids the bank's trees use (SecureBoost; empty for LR)


@dataclass
class PartialsBody:
    """The centre's answer, one slot per requested USCC (zeros where not found).

    ``scores``: ``u_c`` per USCC (LR). ``bits``: packed left/right bits, ``count x len(split_ids)``
    row-major (SecureBoost). Fixed shapes, so the reply's size does not depend on how many
    enterprises were found.
    """

    count: int
    found: Any  # bool (count,)
    scores: Any  # float64 (count,) or empty
    n_bits: int
    bits: Any  # uint8 packed bits or empty


# -- model parts ------------------------------------------------------------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


@dataclass
class BankModelPart:
    """The bank's trained part: LR weights (intercept last) or a SecureBoost guest model."""

    model_type: str
    n_features: int
    weights: np.ndarray | None = None
    guest: SecureBoostGuestModel | None = None

    @classmethod
    def from_dict(cls, model: Mapping[str, Any], who: str = "bank") -> BankModelPart:
        """From the ``model`` entry of a released ``model.json``."""
        kind = model.get("type")
        if kind == "hetero_lr":
            w = _weights(model, who)
            if w.size < 1:
                raise InferenceError(f"{who}: LR model part has no weights")
            return cls("hetero_lr", w.size - 1, weights=w)
        if kind == "secureboost":
            try:
                g = SecureBoostGuestModel.from_bytes(bytes.fromhex(str(model["model_hex"])))
            except (KeyError, ValueError, wire.WireError, ModelError) as exc:
                raise InferenceError(f"{who}: not a SecureBoost guest model part ({exc})") from None
            return cls("secureboost", g.n_features, guest=g)
        raise InferenceError(f"{who}: model type {kind!r} cannot score (expected one of {MODEL_TYPES})")

    def split_ids(self) -> np.ndarray:
        if self.guest is None:
            return np.zeros(0, dtype=np.uint64)
        return np.asarray(self.guest.host_split_ids, dtype=np.uint64)

    def probabilities(self, X: np.ndarray, u_centre: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Default probability of rows ``X`` given the centre's answer for the same rows.

        ``u_centre``: LR partial scores; ``left``: SecureBoost bits ``(rows, len(split_ids()))``.
        """
        if self.model_type == "hetero_lr":
            assert self.weights is not None
            return sigmoid(X @ self.weights[:-1] + self.weights[-1] + u_centre)
        assert self.guest is not None
        col = {int(s): j for j, s in enumerate(self.split_ids().tolist())}
        return sigmoid(self.guest.decision_function(X, lambda sid, rows: left[rows, col[sid]]))


@dataclass
class CentreModelPart:
    """The centre's trained part: LR weights or a SecureBoost host split table."""

    model_type: str
    n_features: int
    weights: np.ndarray | None = None
    host: SecureBoostHostModel | None = None

    @classmethod
    def from_dict(cls, model: Mapping[str, Any], who: str = "credit centre") -> CentreModelPart:
        kind = model.get("type")
        if kind == "hetero_lr":
            w = _weights(model, who)
            return cls("hetero_lr", w.size, weights=w)
        if kind == "secureboost":
            try:
                h = SecureBoostHostModel.from_bytes(bytes.fromhex(str(model["model_hex"])))
            except (KeyError, ValueError, wire.WireError, ModelError) as exc:
                raise InferenceError(f"{who}: not a SecureBoost host model part ({exc})") from None
            return cls("secureboost", h.n_features, host=h)
        raise InferenceError(f"{who}: model type {kind!r} cannot score (expected one of {MODEL_TYPES})")

    def answer(self, X: np.ndarray, split_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``u_c`` per row, bool bits ``(rows, len(split_ids))``) for the centre's rows ``X``."""
        if self.model_type == "hetero_lr":
            assert self.weights is not None
            return X @ self.weights, np.zeros((X.shape[0], 0), dtype=bool)
        assert self.host is not None
        n, k = X.shape[0], split_ids.size
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        ids = np.tile(split_ids, n)
        try:
            left = self.host.directions(X, rows, ids) if n and k else np.zeros(n * k, dtype=bool)
        except ModelError as exc:
            raise InferenceError(f"centre cannot answer the bank's trees: {exc}") from None
        return np.zeros(0), left.reshape(n, k)


def _weights(model: Mapping[str, Any], who: str) -> np.ndarray:
    try:
        w = np.asarray(model["weights"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        raise InferenceError(f"{who}: LR model part has no numeric 'weights'") from None
    if not np.all(np.isfinite(w)):
        raise InferenceError(f"{who}: LR model part has non-finite weights")
    return w


# -- sealing ----------------------------------------------------------------------------------


def _aead(shared: bytes, session: str, batch: int, direction: str) -> ChaCha20Poly1305:
    salt = hashlib.sha256(f"{PROTOCOL}|{session}|{batch}".encode()).digest()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=f"{PROTOCOL} seal {direction}".encode()).derive(
        shared
    )
    return ChaCha20Poly1305(key)


def _aad(kind: str, session: str, batch: int) -> bytes:
    return f"{PROTOCOL}|{kind}|{session}|{batch}".encode()


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _exchange(private: X25519PrivateKey, peer_public: object, who: str) -> bytes:
    if not isinstance(peer_public, bytes) or len(peer_public) != 32:
        raise InferenceError(f"{who}: peer public key must be 32 bytes")
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # low-order point: all-zero shared secret
        raise InferenceError(f"{who}: unusable peer public key ({exc})") from None


def pack_usccs(usccs: list[str]) -> bytes:
    """Fixed-width ASCII (18 bytes per code); codes are normalised upper-case USCCs."""
    out = "".join(usccs).encode("ascii")
    if len(out) != USCC_LEN * len(usccs):
        raise InferenceError(f"every USCC must be {USCC_LEN} ASCII characters")
    return out


def unpack_usccs(raw: bytes, count: int) -> list[str]:
    if not isinstance(raw, bytes) or len(raw) != USCC_LEN * count:
        raise InferenceError(
            f"request holds {len(raw) if isinstance(raw, bytes) else '?'} bytes of USCCs, expected {USCC_LEN} x {count}"
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise InferenceError("request USCCs are not ASCII") from None
    return [text[i : i + USCC_LEN] for i in range(0, len(text), USCC_LEN)]


def _digest(ids: list[str], X: np.ndarray) -> str:
    h = hashlib.sha256("\n".join(ids).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    return h.hexdigest()


# -- parties ----------------------------------------------------------------------------------


@dataclass
class _State:
    version: str
    role: str
    name: str
    peer: str
    session: str
    batch: int
    phase: str
    secret: bytes = b""  # bank: reply key material; centre: its X25519 private key
    digest: str = ""  # bank: hash of the batch it was built on
    status: list = field(default_factory=list)  # bank: per applicant
    scores: Any = None  # bank: probabilities (nan when not scored)
    purpose: str = ""
    queried: list = field(default_factory=list)  # centre: USCCs asked (its query log)
    found: Any = None  # centre: bool per queried USCC


class _InferenceParty(Party):
    role = ""

    def _fail(self, what: str) -> InferenceError:
        return InferenceError(f"inference {self.role} {self.name!r} (batch {self.s.batch}, {self.s.phase}): {what}")

    def _one(self, inbox: list[Envelope], cls: type) -> Any:
        if len(inbox) != 1 or inbox[0].sender != self.s.peer:
            raise self._fail(
                f"expected one {cls.__name__} from {self.s.peer!r}, got {[(e.sender, e.kind) for e in inbox]}"
            )
        try:
            msg = wire.decode(inbox[0].payload, cls)
        except wire.WireError as exc:
            raise self._fail(f"bad message: {exc}") from None
        if msg.protocol != PROTOCOL or msg.session != self.s.session or msg.batch != self.s.batch:
            raise self._fail(
                f"{cls.__name__} for protocol {msg.protocol!r}, session {msg.session!r}, "
                f"batch {msg.batch!r} (wrong run or batch)"
            )
        return msg

    def _open(self, box: ChaCha20Poly1305, sealed: object, kind: str, cls: type) -> Any:
        if not isinstance(sealed, bytes):
            raise self._fail(f"{kind}: sealed field is not bytes")
        try:
            raw = box.decrypt(_NONCE, sealed, _aad(kind, self.s.session, self.s.batch))
            return wire.decode(raw, cls)
        except InvalidTag:
            raise self._fail(f"{kind} does not open with the agreed key (tampered or wrong peer)") from None
        except wire.WireError as exc:
            raise self._fail(f"{kind}: bad sealed body: {exc}") from None

    def to_state(self) -> bytes:
        return wire.encode(self.s)

    @property
    def finished(self) -> bool:
        return self.s.phase == "done"


class InferenceBank(_InferenceParty):
    """Scores one batch of applicants: ``ids`` (normalised USCCs), the bank's preprocessed
    features ``X`` of those rows, and ``refusals[i]`` = consent refusal reason or ``None``.

    Results once :attr:`finished`: :meth:`results` (per applicant) and :meth:`counts`.
    """

    role = "bank"

    def __init__(
        self,
        name: str,
        peer: str,
        *,
        session: str,
        batch: int,
        purpose: str,
        model: BankModelPart,
        ids: list[str],
        X: np.ndarray,
        refusals: list[str | None],
    ) -> None:
        self.name = name
        self.model = model
        self.ids = list(ids)
        self.X = np.asarray(X, dtype=np.float64)
        self.refusals = list(refusals)
        if self.X.ndim != 2 or self.X.shape != (len(self.ids), model.n_features):
            raise InferenceError(
                f"bank {name!r}: features of shape {self.X.shape} for {len(self.ids)} applicants, "
                f"model expects {model.n_features} columns"
            )
        if len(self.refusals) != len(self.ids):
            raise InferenceError(
                f"bank {name!r}: {len(self.refusals)} consent decisions for {len(self.ids)} applicants"
            )
        if not np.all(np.isfinite(self.X)):
            r, c = (int(i) for i in np.argwhere(~np.isfinite(self.X))[0])
            raise InferenceError(f"bank {name!r}: non-finite feature at applicant row {r}, column {c}")
        if len(set(self.ids)) != len(self.ids):
            raise InferenceError(f"bank {name!r}: duplicate applicant USCCs in batch {batch}")
        status = [REFUSED_PREFIX + r if r else "" for r in self.refusals]
        self.s = _State(
            _STATE_VERSION,
            self.role,
            name,
            peer,
            session,
            int(batch),
            "init",
            digest=_digest(self.ids, self.X),
            status=status,
            scores=np.full(len(self.ids), np.nan),
            purpose=purpose,
        )

    @classmethod
    def from_state(
        cls, state: bytes, *, model: BankModelPart, ids: list[str], X: np.ndarray, refusals: list[str | None]
    ) -> InferenceBank:
        s = wire.decode(state, _State)
        if s.version != _STATE_VERSION or s.role != cls.role:
            raise InferenceError("state is not an inference bank state")
        party = cls(
            s.name,
            s.peer,
            session=s.session,
            batch=s.batch,
            purpose=s.purpose,
            model=model,
            ids=ids,
            X=X,
            refusals=refusals,
        )
        if party.s.digest != s.digest:
            raise InferenceError(f"bank {s.name!r}: the applicant batch changed between steps")
        s.scores = np.asarray(s.scores, dtype=np.float64)
        party.s = s
        return party

    @property
    def sent(self) -> np.ndarray:
        """Positions of the applicants whose consent allows the query (the only ones sent)."""
        return np.array([i for i, r in enumerate(self.refusals) if not r], dtype=np.int64)

    def start(self) -> list[Envelope]:
        self.s.phase = "wait_key"
        return []

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if self.s.phase == "wait_key":
            return self._on_key(self._one(inbox, InferenceKey))
        if self.s.phase == "requested":
            return self._on_partials(self._one(inbox, InferencePartials))
        raise self._fail(f"unexpected message(s) {[e.kind for e in inbox]}")

    def _on_key(self, msg: InferenceKey) -> list[Envelope]:
        mine = X25519PrivateKey.generate()
        shared = _exchange(mine, msg.public_key, f"bank {self.name!r}")
        sent = self.sent
        body = RequestBody(
            self.s.purpose,
            self.model.model_type,
            int(sent.size),
            pack_usccs([self.ids[i] for i in sent]),
            self.model.split_ids(),
        )
        sealed = _aead(shared, self.s.session, self.s.batch, "request").encrypt(
            _NONCE, wire.encode(body), _aad("InferenceRequest", self.s.session, self.s.batch)
        )
        self.s.secret = shared
        self.s.phase = "requested"
        return [
            self.send(
                self.s.peer, InferenceRequest(PROTOCOL, self.s.session, self.s.batch, _public_bytes(mine), sealed)
            )
        ]

    def _on_partials(self, msg: InferencePartials) -> list[Envelope]:
        box = _aead(self.s.secret, self.s.session, self.s.batch, "partials")
        body = self._open(box, msg.sealed, "InferencePartials", PartialsBody)
        sent = self.sent
        n, k = int(sent.size), int(self.model.split_ids().size)
        found = np.asarray(body.found)
        if body.count != n or found.shape != (n,) or found.dtype != np.bool_:
            raise self._fail(f"centre answered {body.count} slots (found mask {found.shape}), asked {n}")
        if self.model.model_type == "hetero_lr":
            u = np.asarray(body.scores, dtype=np.float64)
            if u.shape != (n,) or not np.all(np.isfinite(u)):
                raise self._fail(f"centre returned partial scores of shape {u.shape} for {n} applicants")
            left = np.zeros((n, 0), dtype=bool)
        else:
            bits = np.asarray(body.bits, dtype=np.uint8)
            if body.n_bits != n * k or bits.size != (n * k + 7) // 8:
                raise self._fail(f"{body.n_bits} direction bits in {bits.size} bytes, expected {n * k}")
            left = np.unpackbits(bits, count=n * k).astype(bool).reshape(n, k) if n * k else np.zeros((n, k), bool)
            u = np.zeros(n)
        rows = sent[found]
        if rows.size:
            self.s.scores[rows] = self.model.probabilities(self.X[rows], u[found], left[found])
        for i, ok in zip(sent.tolist(), found.tolist()):
            self.s.status[i] = SCORED if ok else UNKNOWN
        self.s.secret = b""
        self.s.phase = "done"
        return []

    def results(self) -> tuple[list[str], np.ndarray, list[str]]:
        """(USCCs, probabilities with NaN where not scored, status per applicant)."""
        if not self.finished:
            raise RuntimeError("results are available once the inference exchange has finished")
        return list(self.ids), np.asarray(self.s.scores, dtype=np.float64).copy(), list(self.s.status)

    def counts(self) -> dict[str, Any]:
        """Aggregate numbers for the ledger: never an id or a score."""
        refused: dict[str, int] = {}
        for r in self.refusals:
            if r:
                refused[r] = refused.get(r, 0) + 1
        status = self.s.status
        return {
            "requested": len(self.ids),
            "refused": dict(sorted(refused.items())),
            "sent": int(self.sent.size),
            "found": sum(st == SCORED for st in status),
            "unknown_at_centre": sum(st == UNKNOWN for st in status),
            "scored": int(np.isfinite(np.asarray(self.s.scores)).sum()),
        }


class InferenceCentre(_InferenceParty):
    """Answers one batch: ``ids`` and ``features`` are the centre's whole table (raw);
    ``transform`` is its fitted local preprocessing, applied to the found rows only."""

    role = "credit_centre"

    def __init__(
        self,
        name: str,
        peer: str,
        *,
        session: str,
        batch: int,
        model: CentreModelPart,
        ids: list[str],
        features: np.ndarray,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        accepted_purposes: tuple[str, ...] = ACCEPTED_PURPOSES,
    ) -> None:
        self.name = name
        self.model = model
        self.ids = ids
        self.features = np.asarray(features, dtype=np.float64)
        if self.features.ndim != 2 or self.features.shape[1] != model.n_features:
            raise InferenceError(
                f"credit centre {name!r}: table has {self.features.shape} features, "
                f"model expects {model.n_features} columns"
            )
        self.transform = transform or (lambda X: X)
        self.accepted_purposes = tuple(accepted_purposes)
        self._index: dict[str, int] | None = None
        self.s = _State(
            _STATE_VERSION, self.role, name, peer, session, int(batch), "init", found=np.zeros(0, dtype=bool)
        )

    @classmethod
    def from_state(
        cls,
        state: bytes,
        *,
        model: CentreModelPart,
        ids: list[str],
        features: np.ndarray,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        accepted_purposes: tuple[str, ...] = ACCEPTED_PURPOSES,
    ) -> InferenceCentre:
        s = wire.decode(state, _State)
        if s.version != _STATE_VERSION or s.role != cls.role:
            raise InferenceError("state is not an inference centre state")
        party = cls(
            s.name,
            s.peer,
            session=s.session,
            batch=s.batch,
            model=model,
            ids=ids,
            features=features,
            transform=transform,
            accepted_purposes=accepted_purposes,
        )
        s.found = np.asarray(s.found, dtype=bool)
        party.s = s
        return party

    def start(self) -> list[Envelope]:
        key = X25519PrivateKey.generate()
        self.s.secret = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self.s.phase = "wait_request"
        return [self.send(self.s.peer, InferenceKey(PROTOCOL, self.s.session, self.s.batch, _public_bytes(key)))]

    def receive(self, inbox: list[Envelope]) -> list[Envelope]:
        if self.s.phase != "wait_request":
            raise self._fail(f"unexpected message(s) {[e.kind for e in inbox]}")
        msg = self._one(inbox, InferenceRequest)
        mine = X25519PrivateKey.from_private_bytes(self.s.secret)
        shared = _exchange(mine, msg.public_key, f"credit centre {self.name!r}")
        body = self._open(
            _aead(shared, self.s.session, self.s.batch, "request"), msg.sealed, "InferenceRequest", RequestBody
        )
        if body.purpose not in self.accepted_purposes:
            raise self._fail(
                f"request for purpose {body.purpose!r}: this centre answers inference queries "
                f"only for {list(self.accepted_purposes)}"
            )
        if body.model_type != self.model.model_type:
            raise self._fail(
                f"bank scores with a {body.model_type!r} model, this centre's part is "
                f"{self.model.model_type!r} (model parts from different training runs?)"
            )
        if not isinstance(body.count, int) or body.count < 0:
            raise self._fail(f"bad applicant count {body.count!r}")
        usccs = unpack_usccs(body.usccs, body.count)
        split_ids = np.asarray(body.split_ids if body.split_ids is not None else [], dtype=np.uint64).ravel()
        if self.model.model_type == "hetero_lr" and split_ids.size:
            raise self._fail("split ids in an LR request")
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.ids)}
        pos = np.fromiter((self._index.get(u, -1) for u in usccs), dtype=np.int64, count=len(usccs))
        found = pos >= 0
        X = self.transform(self.features[pos[found]]) if found.any() else np.zeros((0, self.model.n_features))
        u_found, left_found = self.model.answer(np.asarray(X, dtype=np.float64), split_ids)
        n, k = len(usccs), split_ids.size
        if self.model.model_type == "hetero_lr":
            scores = np.zeros(n)
            scores[found] = u_found
            bits, n_bits = np.zeros(0, dtype=np.uint8), 0
        else:
            left = np.zeros((n, k), dtype=bool)
            left[found] = left_found
            scores, bits, n_bits = np.zeros(0), np.packbits(left.ravel()), n * k
        reply = PartialsBody(n, found, scores.astype(np.float64), int(n_bits), bits)
        sealed = _aead(shared, self.s.session, self.s.batch, "partials").encrypt(
            _NONCE, wire.encode(reply), _aad("InferencePartials", self.s.session, self.s.batch)
        )
        self.s.secret = b""  # the private key is not kept once used
        self.s.purpose, self.s.queried, self.s.found = body.purpose, usccs, found
        self.s.phase = "done"
        return [self.send(self.s.peer, InferencePartials(PROTOCOL, self.s.session, self.s.batch, sealed))]

    def query_log(self) -> tuple[list[str], np.ndarray]:
        """(queried USCCs, found mask): the centre's own record of what this bank asked."""
        return list(self.s.queried), np.asarray(self.s.found, dtype=bool).copy()

    def counts(self) -> dict[str, Any]:
        found = np.asarray(self.s.found, dtype=bool)
        return {
            "queried": len(self.s.queried),
            "found": int(found.sum()),
            "not_found": int((~found).sum()),
            "purpose": self.s.purpose,
        }
