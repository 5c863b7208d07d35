"""Wire messages of the horizontal protocol's setup and key steps (``protocols.common.wire`` bytes).

Training rounds themselves use Flower's FitIns/FitRes records, because Flower's SecAgg+ and
DP mods operate on those; everything else a horizontal run exchanges is one of these
dataclasses, encoded with :func:`protocols.common.wire.encode` and carried as one bytes value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SetupRequest:
    """Coordinator -> every node: which scenario runs; banks answer with what the run needs."""

    scenario_sha256: str
    want_x25519: bool


@dataclass
class SetupReply:
    party: str
    role: str
    scenario_sha256: str
    n_train: int
    n_features: int
    schema_sha256: str
    x25519_public: bytes  # empty unless asked for (CKKS key hand-over)
    x25519_sig: bytes = b""  # the bank's node-key signature over it (upload_auth.statement_digest)


@dataclass
class KeygenRequest:
    """Coordinator -> the key-generating bank: the other banks' X25519 public keys."""

    scenario_sha256: str
    recipients: list[str]
    recipient_publics: list[bytes]
    recipient_sigs: list[bytes] = field(default_factory=list)  # each recipient's SetupReply.x25519_sig


@dataclass
class KeygenReply:
    party: str
    params_context: bytes  # keyless CKKS parameters: all the coordinator gets
    params_fp: str
    key_fp: str
    envelopes: list[bytes]  # wire-encoded keyshare.Envelope, one per recipient, same order
    envelope_sigs: list[bytes] = field(default_factory=list)  # the generating bank's node-key signatures


@dataclass
class InstallRequest:
    scenario_sha256: str
    envelope: bytes
    key_fp: str
    params_fp: str
    sender: str = ""  # the bank that generated the key and sealed the envelope
    envelope_sig: bytes = b""  # its node-key signature over (recipient, envelope)


@dataclass
class InstallReply:
    party: str
    key_fp: str
    params_fp: str


@dataclass
class ReleaseRequest:
    """Coordinator -> one bank: decrypt the encrypted aggregate model and its standardisation
    moments (the model release; the preprocessing is part of the model)."""

    scenario_sha256: str
    chunks: list[bytes]
    length: int
    key_fp: str
    stats_chunks: list[bytes]  # encrypted feature moments (federated standardisation), or empty
    stats_length: int
    # the signed uploads the aggregates are made of (fedcredit.horizontal.upload_auth): the bank
    # re-sums and decrypts these, never ``chunks``/``stats_chunks`` as given
    uploads: list = field(default_factory=list)
    stats_uploads: list = field(default_factory=list)


@dataclass
class ReleaseReply:
    party: str
    weights: np.ndarray  # flat float64 aggregate model
    moments: np.ndarray  # flat [mean, mean of squares] the model's standardisation uses, or empty


@dataclass
class Chunks:
    """A list of ciphertexts carried as ONE bytes value (Flower's legacy FitIns config takes
    only scalars, so lists travel wire-encoded)."""

    items: list[bytes]


def pack_chunks(items: list[bytes]) -> bytes:
    from protocols.common import wire

    return wire.encode(Chunks(items=list(items)))


def unpack_chunks(data: bytes) -> list[bytes]:
    from protocols.common import wire

    return list(wire.decode(bytes(data), Chunks).items)


def pack_floats(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def unpack_floats(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f8").astype(np.float64)
