"""Record format of the compliance ledger and the egress logs: canonical JSON, hash, signature.

Why a separate module: the auditor's verifier and the writers must compute exactly the same bytes,
so the canonicalisation and hashing rules live in one place (and are restated in docs/ledger.md
so that an auditor can re-implement them without Python).

A record is signed over the SHA-256 of a small *header* object whose values are only strings and
integers (no floats), so the header's canonical JSON is trivial to reproduce in any language::

    header = {"v": 1, "log": "ledger"|"egress", "run_id": str, "seq": int, "kind": str,
              "ts": str, "writer": str, "prev_hash": hex64, "payload_sha256": hex64}
    hash   = SHA-256(canonical_json(header))            # stored as 64 lowercase hex chars
    sig    = Ed25519_sign(writer_key, bytes.fromhex(hash))   # stored as 128 lowercase hex chars

``payload_sha256`` is the SHA-256 of the stored payload text (UTF-8), which itself must be the
canonical JSON of the payload object. The payload therefore never has to be re-serialised by a
verifier, which sidesteps float formatting differences between languages.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1
LOG_LEDGER = "ledger"
LOG_EGRESS = "egress"
GENESIS_HASH = "0" * 64
"""``prev_hash`` of record 0: there is nothing before it."""

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# Record kinds the coordinator writes (others are allowed; these are the documented ones).
LEDGER_KINDS = (
    "run_start",
    "consent_check",
    "psi",
    "step",
    "failure",
    "dropout",
    "model_release",
    "inference",
    "run_end",
)
EGRESS_START = "egress_start"
EGRESS_SENT = "sent"
EGRESS_RECEIVED = "received"  # an envelope the node accepted (signature and stream seq verified)
EGRESS_REFUSED = "refused"  # an envelope the node refused, and why (the run stops there)
EGRESS_FAILED = "failed"  # a step the node was asked to do and could not (protocol error, bad input)
EGRESS_COSIGNED = "cosigned"  # a coordinator tree head this node checked and co-signed (docs/ledger.md)
EGRESS_END = "egress_end"  # the node's signed last record: a log without it was truncated


class LedgerError(Exception):
    """A ledger or egress log cannot be written or read as asked (not a verification result)."""


class LedgerFileError(LedgerError):
    """The file is missing, not SQLite, or not a fedcredit ledger."""


def _plain(obj: Any, path: str) -> Any:
    """Convert ``obj`` to plain JSON types, rejecting anything ambiguous (NaN, bytes, odd keys)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise LedgerError(
                f"payload value at {path} is {obj!r}: NaN/Infinity are not allowed "
                "in canonical JSON (record None or a string instead)"
            )
        return float(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise LedgerError(f"payload key {k!r} at {path} is not a string")
            out[k] = _plain(v, f"{path}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return sorted(_plain(v, f"{path}{{}}") for v in obj)
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "shape", None) == ():
        return _plain(item(), path)
    raise LedgerError(
        f"payload value at {path} has unsupported type {type(obj).__name__} "
        "(use str/int/float/bool/None/list/dict; hash bytes before logging them)"
    )


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8 (not \\u-escaped), no NaN/Infinity.

    Floats use Python's shortest round-trip repr; integers are exact. The same object always
    gives the same text, so the text can be hashed.
    """
    return json.dumps(_plain(obj, "$"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """Record timestamp: UTC, microseconds, ``Z`` suffix (e.g. ``2025-01-31T12:00:00.000001Z``)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header(
    *, log: str, run_id: str, seq: int, kind: str, ts: str, writer: str, prev_hash: str, payload_text: str
) -> dict[str, Any]:
    """The object whose canonical JSON is hashed (see module docstring)."""
    return {
        "v": FORMAT_VERSION,
        "log": log,
        "run_id": run_id,
        "seq": seq,
        "kind": kind,
        "ts": ts,
        "writer": writer,
        "prev_hash": prev_hash,
        "payload_sha256": sha256_hex(payload_text.encode("utf-8")),
    }


def record_hash(**fields: Any) -> str:
    """SHA-256 (hex) of the canonical header built from ``fields`` (the arguments of :func:`header`)."""
    return sha256_hex(canonical_json(header(**fields)).encode("utf-8"))


@dataclass(frozen=True)
class Record:
    """One signed, hash-chained entry of a ledger or an egress log, as stored."""

    log: str
    seq: int
    run_id: str
    kind: str
    ts: str
    writer: str
    prev_hash: str
    payload_text: str
    hash: str
    sig: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_text)

    def expected_hash(self) -> str:
        return record_hash(
            log=self.log,
            run_id=self.run_id,
            seq=self.seq,
            kind=self.kind,
            ts=self.ts,
            writer=self.writer,
            prev_hash=self.prev_hash,
            payload_text=self.payload_text,
        )

    def as_dict(self) -> dict[str, Any]:
        """Export form (payload parsed); used by ``fedcredit ledger export``."""
        return {
            "log": self.log,
            "seq": self.seq,
            "run_id": self.run_id,
            "kind": self.kind,
            "ts": self.ts,
            "writer": self.writer,
            "prev_hash": self.prev_hash,
            "payload": self.payload,
            "hash": self.hash,
            "sig": self.sig,
        }


def message_digest(payload: bytes) -> tuple[str, int]:
    """``(sha256_hex, size)`` of the exact bytes that crossed a node boundary.

    Writers of ``step`` records and of egress logs must both use this, so the cross-check compares
    like with like.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise LedgerError(f"message payload must be bytes, got {type(payload).__name__}")
    b = bytes(payload)
    return sha256_hex(b), len(b)


def message_entry(*, sender: str, recipient: str, kind: str, payload: bytes) -> dict[str, Any]:
    """One element of a ``step`` record's ``messages`` list for the given payload bytes."""
    digest, size = message_digest(payload)
    return {"sender": sender, "recipient": recipient, "kind": kind, "size": size, "sha256": digest}


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of a configuration mapping (for ``run_start``)."""
    return sha256_hex(canonical_json(config).encode("utf-8"))
