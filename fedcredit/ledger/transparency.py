"""An append-only Merkle log with RFC 9162 semantics, signed tree heads and co-signatures.

Why: the coordinator signs its own ledger, so alone it could rewrite and re-sign its history.
Here every record is a leaf of a Merkle tree (RFC 9162 section 2.1: leaf hash SHA-256(0x00 ||
record), node hash SHA-256(0x01 || left || right)). At a phase boundary the coordinator signs a
*tree head* (size, root); each party checks that the new head is *consistent* with the last head
it holds (RFC 9162 section 2.1.4: the old tree is a prefix of the new one) and that its own
records are *included* (section 2.1.3), then co-signs the head and keeps it. After that, removing,
altering or reordering any record the head covers changes the root of that prefix, which the
coordinator cannot re-sign for the parties: :func:`verify_log` names the first co-signed head
that no longer matches and the record range it covers.

The trees and proofs are pymerkle's (``InmemoryTree``, ``verify_inclusion``,
``verify_consistency``; its leaf/node prefixes are RFC 9162's, checked against an independent
implementation in tests/test_transparency.py); this module adds the signed heads, the witness
that co-signs, and the verifier.

Wiring (:mod:`fedcredit.ledger.cosign`, :mod:`fedcredit.ledger.rundir`, parties/common): the coordinator's ``LedgerRecorder`` appends each record's
canonical bytes; after each relay phase it sends every node ``SignedTreeHead`` + consistency
proof from the node's last head + inclusion proofs of the records naming that node's
ingress/egress; the node's :class:`Witness` answers with a :class:`CoSignature` (written to the
node's log, with a signed end record at run end); ``fedcredit ledger verify RUN_DIR`` calls
:func:`verify_log` with the coordinator's records, heads and every party's co-signatures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pymerkle import ConsistencyProof, InclusionProof, InmemoryTree, InvalidProof, verify_consistency, verify_inclusion

HEAD_CONTEXT = b"fedcredit/tree-head/v1\n"
COSIGN_CONTEXT = b"fedcredit/tree-head-cosignature/v1\n"


class TransparencyError(ValueError):
    """A head, proof or co-signature that does not check out; the message says which and why."""


def _tree(records: Sequence[bytes]) -> InmemoryTree:
    tree = InmemoryTree(algorithm="sha256")
    for r in records:
        tree.append_entry(r)
    return tree


def leaf_hash(record: bytes) -> bytes:
    """RFC 9162 leaf hash (what inclusion proofs prove)."""
    return hashlib.sha256(b"\x00" + record).digest()


@dataclass(frozen=True)
class SignedTreeHead:
    """The coordinator's signed statement: log ``log_id`` had ``size`` records with ``root``."""

    log_id: str
    size: int
    root: str  # hex
    timestamp: str
    signature: str = ""  # hex Ed25519 over :meth:`message`

    def message(self) -> bytes:
        body = {"log_id": self.log_id, "size": self.size, "root": self.root, "timestamp": self.timestamp}
        return HEAD_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.message()).hexdigest()

    def check_signature(self, key: Ed25519PublicKey) -> None:
        try:
            key.verify(bytes.fromhex(self.signature), self.message())
        except (InvalidSignature, ValueError):
            raise TransparencyError(f"tree head of size {self.size}: coordinator signature does not verify") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CoSignature:
    """A party's signature over a tree head it checked (consistency and its own inclusions)."""

    party: str
    head_digest: str
    size: int
    signature: str  # hex Ed25519 over COSIGN_CONTEXT + head digest

    def check(self, key: Ed25519PublicKey) -> None:
        try:
            key.verify(bytes.fromhex(self.signature), COSIGN_CONTEXT + bytes.fromhex(self.head_digest))
        except (InvalidSignature, ValueError):
            raise TransparencyError(f"co-signature of {self.party!r} on head {self.size}: does not verify") from None


class TransparencyLog:
    """The coordinator's side: append records, sign heads, prove inclusion and consistency."""

    def __init__(self, log_id: str, records: Sequence[bytes] = ()):
        self.log_id = log_id
        self.records: list[bytes] = []
        self._tree = InmemoryTree(algorithm="sha256")
        for r in records:
            self.append(r)

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: bytes) -> int:
        """Add a record; returns its 0-based index."""
        self.records.append(bytes(record))
        self._tree.append_entry(bytes(record))
        return len(self.records) - 1

    def root(self, size: int | None = None) -> bytes:
        n = len(self.records) if size is None else size
        if n == 0:
            return hashlib.sha256(b"").digest()  # RFC 9162: MTH({}) = SHA-256()
        return self._tree.get_root(n)

    def head(self, key: Ed25519PrivateKey, timestamp: str) -> SignedTreeHead:
        h = SignedTreeHead(self.log_id, len(self.records), self.root().hex(), timestamp)
        return SignedTreeHead(h.log_id, h.size, h.root, h.timestamp, key.sign(h.message()).hex())

    def prove_inclusion(self, index: int, size: int) -> dict[str, Any]:
        """Proof that record ``index`` (0-based) is in the tree of ``size`` records."""
        if not 0 <= index < size <= len(self.records):
            raise TransparencyError(f"no record {index} in a tree of {size}")
        return self._tree.prove_inclusion(index + 1, size).serialize()

    def prove_consistency(self, old_size: int, new_size: int) -> dict[str, Any]:
        if not 0 < old_size <= new_size <= len(self.records):
            raise TransparencyError(f"no consistency proof from {old_size} to {new_size}")
        return self._tree.prove_consistency(old_size, new_size).serialize()


@dataclass
class Witness:
    """A party's side: check each new head against the last it holds, then co-sign it."""

    party: str
    key: Ed25519PrivateKey
    coordinator: Ed25519PublicKey
    heads: list[SignedTreeHead] = field(default_factory=list)

    def cosign(
        self,
        head: SignedTreeHead,
        consistency: Mapping[str, Any] | None,
        inclusions: Mapping[int, tuple[bytes, Mapping[str, Any]]] = {},
    ) -> CoSignature:
        """Co-sign ``head`` if its signature verifies, it extends the last head held (``consistency``
        proves it) and each ``inclusions[index] = (own record, proof)`` is in it."""
        head.check_signature(self.coordinator)
        root = bytes.fromhex(head.root)
        if self.heads:
            last = self.heads[-1]
            if head.log_id != last.log_id:
                raise TransparencyError(f"{self.party}: head is for log {head.log_id!r}, not {last.log_id!r}")
            if head.size < last.size:
                raise TransparencyError(
                    f"{self.party}: head of size {head.size} is older than {last.size} (truncated?)"
                )
            if head.size == last.size:
                if head.root != last.root:
                    raise TransparencyError(f"{self.party}: two different roots for size {head.size} (fork)")
            else:
                if consistency is None:
                    raise TransparencyError(f"{self.party}: no consistency proof from {last.size} to {head.size}")
                try:
                    verify_consistency(
                        bytes.fromhex(last.root), root, ConsistencyProof.deserialize(dict(consistency)),
                        prior_size=last.size, later_size=head.size,
                    )  # fmt: skip
                except (InvalidProof, KeyError, ValueError) as exc:
                    raise TransparencyError(
                        f"{self.party}: head {head.size} is not consistent with head {last.size} ({exc})"
                    ) from None
        for index, (record, proof) in inclusions.items():
            try:
                verify_inclusion(
                    leaf_hash(record), root, InclusionProof.deserialize(dict(proof)), index=index + 1, size=head.size
                )
            except (InvalidProof, KeyError, ValueError) as exc:
                raise TransparencyError(
                    f"{self.party}: own record {index} is not in head {head.size} ({exc})"
                ) from None
        self.heads.append(head)
        sig = self.key.sign(COSIGN_CONTEXT + bytes.fromhex(head.digest)).hex()
        return CoSignature(self.party, head.digest, head.size, sig)


@dataclass
class LogVerdict:
    ok: bool
    errors: list[str]
    heads_checked: int


def verify_log(
    records: Sequence[bytes],
    heads: Sequence[SignedTreeHead],
    cosignatures: Sequence[CoSignature],
    coordinator: Ed25519PublicKey,
    parties: Mapping[str, Ed25519PublicKey],
) -> LogVerdict:
    """Check ``records`` against every head all ``parties`` co-signed.

    Fails, naming the head and record range, if a co-signed head's root no longer matches the
    records' prefix (a record removed, altered, reordered or inserted), if the log is shorter
    than a co-signed head (truncated), or if a party's co-signature is missing or forged.
    """
    errors: list[str] = []
    tree = _tree(records)
    signed_by: dict[str, set[str]] = {}
    for c in cosignatures:
        if c.party not in parties:
            errors.append(f"co-signature by unknown party {c.party!r}")
            continue
        try:
            c.check(parties[c.party])
        except TransparencyError as exc:
            errors.append(str(exc))
            continue
        signed_by.setdefault(c.head_digest, set()).add(c.party)
    prev = 0
    checked = 0
    for h in sorted(heads, key=lambda x: x.size):
        try:
            h.check_signature(coordinator)
        except TransparencyError as exc:
            errors.append(str(exc))
            continue
        missing = sorted(set(parties) - signed_by.get(h.digest, set()))
        if missing:
            errors.append(f"tree head {h.size}: no valid co-signature from {', '.join(missing)}")
            continue
        checked += 1
        if h.size > len(records):
            errors.append(
                f"log truncated: {len(records)} records, but head {h.size} was co-signed "
                f"(a record in {prev}..{h.size - 1} was removed)"
            )
            break
        root = tree.get_root(h.size).hex() if h.size else hashlib.sha256(b"").hexdigest()
        if root != h.root:
            errors.append(
                f"co-signed tree head {h.size} does not match the log: a record in {prev}..{h.size - 1} "
                "was removed, altered, inserted or reordered"
            )
            break
        prev = h.size
    return LogVerdict(not errors, errors, checked)
