"""The transparency log wired into runs: heads the coordinator announces, co-signs the nodes keep.

Why: :mod:`fedcredit.ledger.transparency` gives the Merkle log, signed heads and a witness; this
module decides *what* is a leaf and *what* a node checks, for both ends and for the auditor.

* Leaf ``i`` is the ASCII of ledger record ``i``'s hash (the record hash already commits to every
  header field and the payload, docs/ledger.md section 3), so an auditor rebuilds the tree from
  the ledger file alone.
* :class:`HeadIssuer` (coordinator) mirrors every ledger record into the log and, once per phase
  boundary, signs one head and gives each party the consistency proof from the last head that
  party holds plus inclusion proofs of the ``step`` records it took part in since then.
* :func:`witness` (node) checks the head's signature with the coordinator key it pinned at the
  first head, its consistency, each included record's hash and inclusion, and that every payload
  its own log says it sent at that step is listed in the record; only then does it co-sign.
* :func:`check_cosigned` (auditor) checks the ledger against every head all parties co-signed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedcredit.ledger.keys import public_key_from_hex, public_key_hex
from fedcredit.ledger.records import EGRESS_SENT, LedgerError, Record, utc_timestamp
from fedcredit.ledger.transparency import (
    CoSignature,
    SignedTreeHead,
    TransparencyError,
    TransparencyLog,
    Witness,
    verify_log,
)

_HEADER = ("log", "seq", "run_id", "kind", "ts", "writer", "prev_hash", "payload_text", "hash", "sig")


def leaf(rec: Record) -> bytes:
    """The Merkle leaf of a ledger record: its hash as ASCII hex."""
    return str(rec.hash).encode("ascii")


def _participants(rec: Record) -> set[str]:
    if rec.kind != "step":
        return set()
    try:
        p = json.loads(rec.payload_text).get("participants", [])
    except (ValueError, AttributeError):
        return set()
    return {str(x) for x in p} if isinstance(p, list) else set()


class HeadIssuer:
    """Coordinator side: the Merkle mirror of the ledger and the heads it announces."""

    def __init__(self, log_id: str, key: Ed25519PrivateKey, records: Sequence[Record] = ()) -> None:
        self.log = TransparencyLog(log_id)
        self.key = key
        self.records: list[Record] = []
        self.held: dict[str, int] = {}  # party -> size of the last head announced to it
        self.heads: list[SignedTreeHead] = []
        for r in records:
            self.add(r)

    def add(self, rec: Record) -> None:
        self.records.append(rec)
        self.log.append(leaf(rec))

    def announce(self, parties: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One signed head of the log as it is now, with each party's proofs (one head per boundary)."""
        if not self.records:
            return {}
        head = self.log.head(self.key, utc_timestamp())
        self.heads.append(head)
        out: dict[str, dict[str, Any]] = {}
        for p in parties:
            old = self.held.get(p, 0)
            consistency = self.log.prove_consistency(old, head.size) if 0 < old < head.size else None
            inclusions = [
                {
                    "index": i,
                    "record": {f: getattr(self.records[i], f) for f in _HEADER},
                    "proof": self.log.prove_inclusion(i, head.size),
                }
                for i in range(old, head.size)
                if p in _participants(self.records[i])
            ]
            out[p] = {
                "head": head.to_dict(),
                "coordinator_pubkey": public_key_hex(self.key),
                "consistency": consistency,
                "inclusions": inclusions,
            }
            self.held[p] = head.size
        return out


def head_from(d: Mapping[str, Any]) -> SignedTreeHead:
    try:
        return SignedTreeHead(
            str(d["log_id"]), int(d["size"]), str(d["root"]), str(d["timestamp"]), str(d["signature"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TransparencyError(f"malformed tree head ({exc})") from None


def witness(
    announcement: Mapping[str, Any],
    *,
    party: str,
    key: Ed25519PrivateKey,
    coordinator: Ed25519PublicKey,
    last_head: SignedTreeHead | None,
    own_sent: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[SignedTreeHead, CoSignature]:
    """Check one announced head as ``party`` and co-sign it; raises :class:`TransparencyError`
    naming the problem (forged head, fork, truncation, a record of ours missing or altered).

    ``own_sent``: step -> this node's own ``sent`` records at that step (from its node log); each
    must be listed as a message of the included step record.
    """
    head = head_from(announcement.get("head") or {})
    inclusions: dict[int, tuple[bytes, Mapping[str, Any]]] = {}
    listed: dict[str, set[tuple[Any, Any, Any]]] = {}  # step -> this party's messages the records list
    where: dict[str, int] = {}
    for item in announcement.get("inclusions") or []:
        try:
            rec = Record(**{f: item["record"][f] for f in _HEADER})
            index = int(item["index"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TransparencyError(f"{party}: malformed inclusion ({exc})") from None
        if rec.expected_hash() != rec.hash:
            raise TransparencyError(f"{party}: ledger record #{index} shown for inclusion does not hash to its hash")
        payload = json.loads(rec.payload_text)
        step = str(payload.get("step"))
        where.setdefault(step, index)
        listed.setdefault(step, set()).update(
            (m.get("recipient"), m.get("kind"), m.get("sha256"))
            for m in payload.get("messages", [])
            if isinstance(m, dict) and m.get("sender") == party
        )
        inclusions[index] = (leaf(rec), item["proof"])
    for step, sent in own_sent.items():  # a step may recur (horizontal rounds): any included record of it
        for s in sent:
            key_ = (s.get("recipient"), s.get("kind"), s.get("sha256"))
            if key_ not in listed.get(step, set()):
                at = f"ledger record #{where[step]}" if step in where else "no included ledger record"
                raise TransparencyError(
                    f"{party}: {at} (step {step!r}) omits a {key_[1]} this node sent to "
                    f"{key_[0]} (sha256 {str(key_[2])[:16]}...)"
                )
    w = Witness(party, key, coordinator, [last_head] if last_head else [])
    cosig = w.cosign(head, announcement.get("consistency"), inclusions)
    return head, cosig


def sent_by_step(records: Sequence[Record], cosigned_kind: str = "cosigned") -> dict[str, list[dict[str, Any]]]:
    """A node log's ``sent`` records since the last head it co-signed, grouped by step (what
    :func:`witness` checks the new head's records list; earlier ones an earlier head covered)."""
    last = max((i for i, r in enumerate(records) if r.kind == cosigned_kind), default=-1)
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records[last + 1 :]:
        if r.kind == EGRESS_SENT:
            p = r.payload
            out.setdefault(str(p.get("step")), []).append(p)
    return out


def own_since_last_head(records: Sequence[Record]) -> dict[str, list[dict[str, Any]]]:
    """What a node checks the next head's records list: its ``sent`` records since the last head it
    co-signed and since its latest ``hello`` answer (sends of a lost segment before a resumed run's
    hello were never relayed; the egress cross-check of ``ledger verify`` reports them)."""
    start = 0
    for i, r in enumerate(records):
        if r.kind == "cosigned":
            start = i + 1
        elif r.kind == EGRESS_SENT and str(r.payload.get("step", "")).endswith("hello"):
            start = max(start, i)
    return sent_by_step(records[start:], cosigned_kind="")


@dataclass
class NodeHeads:
    """What one node log says about the heads its node co-signed."""

    node: str
    coordinator_keys: set[str]
    heads: list[SignedTreeHead]
    cosignatures: list[CoSignature]
    ended: bool


def node_heads(node: str, records: Sequence[Record], cosigned_kind: str, end_kind: str) -> NodeHeads:
    keys: set[str] = set()
    heads: list[SignedTreeHead] = []
    cosigs: list[CoSignature] = []
    for r in records:
        if r.kind != cosigned_kind:
            continue
        try:
            p = r.payload
            h = head_from(p["head"])
            keys.add(str(p["coordinator_pubkey"]))
            cosigs.append(CoSignature(node, h.digest, h.size, str(p["cosignature"])))
            heads.append(h)
        except (KeyError, TypeError, ValueError, TransparencyError):
            continue  # the chain check of the node log reports malformed records
    return NodeHeads(node, keys, heads, cosigs, bool(records) and records[-1].kind == end_kind)


def check_cosigned(
    ledger: Sequence[Record],
    nodes: Sequence[NodeHeads],
    coordinator: Ed25519PublicKey,
    node_keys: Mapping[str, Ed25519PublicKey],
) -> tuple[list[str], int]:
    """Errors (each naming the head and the ledger records it covers) and the heads checked."""
    errors: list[str] = []
    coord_hex = public_key_hex(coordinator)
    for n in nodes:
        for k in sorted(n.coordinator_keys - {coord_hex}):
            errors.append(f"node {n.node} co-signed heads of coordinator key {k[:16]}..., not {coord_hex[:16]}...")
    heads: dict[str, SignedTreeHead] = {}
    for n in nodes:
        for h in n.heads:
            heads.setdefault(h.digest, h)
    if not heads:
        errors.append("no co-signed tree head in any node log: nothing binds the ledger beyond its own key")
        return errors, 0
    cosigs = [c for n in nodes for c in n.cosignatures]
    verdict = verify_log([leaf(r) for r in ledger], list(heads.values()), cosigs, coordinator, dict(node_keys))
    for e in verdict.errors:
        errors.append(_name_records(e, ledger))
    return errors, verdict.heads_checked


def _name_records(error: str, ledger: Sequence[Record]) -> str:
    """Add the kinds and steps of the ledger records a failing head covers, so the report names them."""
    import re

    m = re.search(r"a record in (\d+)\.\.(\d+)", error)
    if not m:
        return error
    lo, hi = int(m.group(1)), min(int(m.group(2)), len(ledger) - 1)
    names = []
    for i in range(lo, hi + 1):
        try:
            p = json.loads(ledger[i].payload_text)
            names.append(f"#{i} {ledger[i].kind}" + (f" {p['step']}" if ledger[i].kind == "step" else ""))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            names.append(f"#{i}")
    return f"{error} (ledger records now there: {', '.join(names)})"


def coordinator_key_hex(value: str) -> Ed25519PublicKey:
    try:
        return public_key_from_hex(value)
    except LedgerError as exc:
        raise TransparencyError(f"pinned coordinator key: {exc}") from None
