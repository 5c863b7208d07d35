"""Offline verification of a run ledger and its data nodes' egress logs (what an auditor runs).

The procedure is written out in docs/ledger.md so it can be re-implemented independently. In short:
records are read in ``seq`` order and each must (1) have well-formed fields, (2) carry the next
sequence number, (3) belong to the same run/log/writer as record 0, (4) point at the previous
record's hash, (5) hash to its stored hash, (6) carry a valid Ed25519 signature over that hash,
(7) hold a canonical JSON object as payload and respect the kind grammar (run_start first, nothing
after run_end). Then every message a node sent according to the ledger must appear in that node's
own signed egress log, and vice versa; and every party-to-party envelope a node's log says it sent
(recipient, kind, step, stream seq, size, SHA-256) must appear as received in the recipient's log,
and every received one as sent in the sender's: a drop, injection, replay or alteration by the relay
is named with step and party, as is every envelope a node refused.

A ledger that passes (1)-(7) but lacks ``run_end`` is *intact but incomplete*: that is what a crash
leaves behind, and it is also what deleting trailing records produces -- the two cannot be told apart
from the file alone (see docs/ledger.md, "What is and is not proven"), so it is reported separately
and rejected unless the auditor explicitly allows incomplete ledgers.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedcredit.ledger.keys import public_key_from_hex, public_key_hex, signature_valid
from fedcredit.ledger.records import (
    EGRESS_COSIGNED,
    EGRESS_END,
    EGRESS_FAILED,
    EGRESS_RECEIVED,
    EGRESS_REFUSED,
    EGRESS_SENT,
    EGRESS_START,
    GENESIS_HASH,
    HEX64,
    HEX128,
    KIND_RE,
    LOG_EGRESS,
    LOG_LEDGER,
    LedgerError,
    LedgerFileError,
    Record,
    canonical_json,
)
from fedcredit.ledger.store import read_records

MAX_ERRORS = 50
_TEXT_FIELDS = ("log", "run_id", "kind", "ts", "writer", "prev_hash", "payload_text", "hash", "sig")


@dataclass
class EgressCheck:
    """Cross-check result for one node's egress log."""

    node: str
    path: str
    records: int = 0
    messages_in_ledger: int = 0
    messages_in_egress: int = 0
    matched: int = 0
    received: int = 0  # envelopes the node accepted from peers (ingress records)
    refused: int = 0  # envelopes the node refused


@dataclass
class _Links:
    """One node log's party-to-party envelopes, keyed (sender, recipient, kind, sent step, seq, size, sha256)."""

    path: str
    sent: dict[tuple, int] = field(default_factory=dict)  # key -> record position
    received: dict[tuple, int] = field(default_factory=dict)
    refused: list[tuple[int, dict]] = field(default_factory=list)  # (position, payload)
    served: set[str] = field(default_factory=set)  # steps the node was asked to do (any record at that step)


@dataclass
class VerificationReport:
    """Outcome of :func:`verify`.

    ``intact``: no record was tampered with (chain, hashes, signatures, grammar, egress all hold).
    ``complete``: the ledger ends with ``run_end``. ``ok`` = intact and complete.
    ``ok_up_to``: highest seq such that records 0..ok_up_to all verified (None if record 0 fails).
    ``first_bad``: seq position of the first record that failed a check (None if none did).
    ``readable``: the file could be opened as a ledger (False: missing, not SQLite, no ledger table).
    ``key_source``: "given" (auditor's --pubkey), "self-declared" (taken from run_start: proves only
    internal consistency), "co-signed" (every party co-signed heads of this key and the ledger
    matches them: :mod:`fedcredit.ledger.rundir`), or "none" (no key could be found).
    """

    path: str
    ok: bool = False
    readable: bool = False
    records: int = 0
    errors: list[str] = field(default_factory=list)
    first_bad: int | None = None
    intact: bool = False
    complete: bool = False
    ok_up_to: int | None = None
    run_id: str | None = None
    key_source: str = "none"
    coordinator_pubkey: str | None = None
    head_hash: str | None = None
    warnings: list[str] = field(default_factory=list)
    egress: list[EgressCheck] = field(default_factory=list)
    suppressed_errors: int = 0
    heads_checked: int = 0  # co-signed tree heads the ledger matched (fedcredit.ledger.rundir)
    node_key_source: str | None = None  # where the node keys came from (run directory verification)

    def _error(self, msg: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(msg)
        else:
            self.suppressed_errors += 1

    def summary(self) -> str:
        if self.ok:
            heads = f", {self.heads_checked} co-signed tree heads" if self.heads_checked else ""
            return f"OK: {self.records} records, chain/signatures/egress verified{heads}, run complete"
        if self.intact and not self.complete:
            return (
                f"INCOMPLETE: {self.records} records verify (up to #{self.ok_up_to}) but the run has "
                "no run_end: the ledger was truncated (crash or deletion of trailing records)"
            )
        where = f"first bad record #{self.first_bad}: " if self.first_bad is not None else ""
        return f"FAILED: {where}{self.errors[0] if self.errors else 'unknown error'}"


@dataclass
class _ChainResult:
    records: list[Record]
    bad: dict[int, list[str]]  # position -> reasons
    payloads: dict[int, dict[str, Any]]

    @property
    def first_bad(self) -> int | None:
        return min(self.bad) if self.bad else None


def _field_problems(rec: Record) -> list[str]:
    probs = []
    if type(rec.seq) is not int:
        probs.append(f"seq has type {type(rec.seq).__name__}, expected integer")
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(rec, name), str):
            probs.append(f"{name} has type {type(getattr(rec, name)).__name__}, expected text")
    return probs


def _check_chain(
    records: list[Record],
    *,
    log: str,
    pub: Ed25519PublicKey | None,
    start_kind: str,
    key_label: str = "the writer's public key",
) -> _ChainResult:
    """Checks (1)-(7) of the module docstring on one file's records."""
    res = _ChainResult(records, {}, {})
    if not records:
        return res
    first = records[0]
    prev_hash: Any = GENESIS_HASH
    ended_at: int | None = None
    for i, rec in enumerate(records):
        probs = _field_problems(rec)
        if probs:
            res.bad[i] = probs
            prev_hash = rec.hash
            continue
        p: list[str] = []
        if rec.seq != i:
            p.append(
                f"expected seq {i} here but found seq {rec.seq} "
                f"({'record(s) missing' if rec.seq > i else 'duplicate or reordered record'})"
            )
        if rec.log != log:
            p.append(f"record belongs to a {rec.log!r} log, expected {log!r}")
        if i and rec.run_id != first.run_id:
            p.append(f"run_id {rec.run_id!r} differs from the run's {first.run_id!r} (spliced from another run?)")
        if i and rec.writer != first.writer:
            p.append(f"writer {rec.writer!r} differs from {first.writer!r}")
        if not KIND_RE.fullmatch(rec.kind):
            p.append(f"malformed kind {rec.kind!r}")
        if rec.prev_hash != prev_hash:
            p.append(
                "prev_hash does not match the previous record's hash (chain broken: "
                "record inserted, deleted, reordered or spliced)"
            )
        hash_ok = False
        if not HEX64.fullmatch(rec.hash):
            p.append("hash is not 64 lowercase hex characters")
        elif rec.expected_hash() != rec.hash:
            p.append("hash does not match the record's contents (a field was changed)")
        else:
            hash_ok = True
        if not HEX128.fullmatch(rec.sig):
            p.append("signature is not 128 lowercase hex characters")
        elif pub is None:
            p.append("no public key to check the signature")
        elif hash_ok and not signature_valid(pub, rec.hash, rec.sig):
            p.append(f"Ed25519 signature does not verify with {key_label} (re-signed with another key, or altered)")
        try:
            payload = json.loads(rec.payload_text)
            if not isinstance(payload, dict):
                p.append("payload is not a JSON object")
            elif canonical_json(payload) != rec.payload_text:
                p.append("payload is not in canonical JSON form")
            else:
                res.payloads[i] = payload
        except (ValueError, LedgerError) as exc:
            p.append(f"payload is not valid JSON ({exc})")
        if i == 0 and rec.kind != start_kind:
            p.append(f"first record must be {start_kind}, found {rec.kind!r}")
        if i > 0 and rec.kind == start_kind:
            p.append(f"{start_kind} appears again at position {i}")
        if ended_at is not None:
            p.append(f"record after run_end (#{ended_at})")
        if rec.kind == "run_end" and ended_at is None:
            ended_at = i
        if p:
            res.bad[i] = p
        prev_hash = rec.hash
    return res


def _declared_key(rec: Record, field_name: str) -> tuple[str | None, str | None]:
    """(key hex, problem) declared in a start record's payload."""
    try:
        payload = json.loads(rec.payload_text) if isinstance(rec.payload_text, str) else None
    except ValueError:
        return None, "record 0 payload is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get(field_name), str):
        return None, f"record 0 declares no {field_name}"
    return payload[field_name], None


def _resolve_key(value: Any) -> Ed25519PublicKey:
    if isinstance(value, Ed25519PublicKey):
        return value
    if hasattr(value, "public_key"):
        return value.public_key()
    if isinstance(value, str):
        return public_key_from_hex(value)
    raise LedgerError(f"unsupported public key value {type(value).__name__}")


def verify(
    path: str | os.PathLike[str],
    *,
    public_key: Any = None,
    egress: Iterable[str | os.PathLike[str]] = (),
    egress_public_keys: Mapping[str, Any] | None = None,
) -> VerificationReport:
    """Verify a run ledger (and optionally its nodes' egress logs). Never raises for bad files."""
    report = VerificationReport(path=str(path))
    try:
        records = read_records(path)
    except LedgerFileError as exc:
        report._error(str(exc))
        return report
    report.readable = True
    report.records = len(records)
    if not records:
        report._error(
            "ledger has no records, not even run_start (created but never written, "
            "e.g. the run died before starting, or every record was deleted)"
        )
        return report
    first = records[0]
    if first.log == LOG_EGRESS:
        report._error(
            f"{path} is an egress log (node {first.writer!r}), not a run ledger: "
            "pass it with --egress next to its ledger"
        )
        return report
    report.run_id = first.run_id if isinstance(first.run_id, str) else None

    declared, problem = _declared_key(first, "coordinator_pubkey")
    pub: Ed25519PublicKey | None = None
    if public_key is not None:
        pub = _resolve_key(public_key)
        report.key_source = "given"
        report.coordinator_pubkey = public_key_hex(pub)
        if declared is not None and declared != report.coordinator_pubkey:
            report.warnings.append(
                f"run_start declares coordinator key {declared[:16]}... but the auditor's key is "
                f"{report.coordinator_pubkey[:16]}...: the ledger was not signed by the expected key"
            )
    elif declared is not None:
        try:
            pub = public_key_from_hex(declared)
            report.key_source = "self-declared"
            report.coordinator_pubkey = declared
            report.warnings.append(
                "signatures checked with the key declared inside the ledger (run_start): this proves "
                "internal consistency only; pass --pubkey with the coordinator's published key to "
                "prove who wrote it"
            )
        except LedgerError as exc:
            report.warnings.append(str(exc))
    else:
        report.warnings.append(f"no coordinator key: {problem}")

    label = "the auditor's public key" if report.key_source == "given" else "the coordinator key declared in run_start"
    chain = _check_chain(records, log=LOG_LEDGER, pub=pub, start_kind="run_start", key_label=label)
    for pos in sorted(chain.bad):
        for reason in chain.bad[pos]:
            report._error(f"ledger record #{pos}: {reason}")
    report.first_bad = chain.first_bad
    report.ok_up_to = (len(records) - 1) if chain.first_bad is None else (chain.first_bad - 1)
    if report.ok_up_to is not None and report.ok_up_to < 0:
        report.ok_up_to = None
    report.head_hash = records[-1].hash if isinstance(records[-1].hash, str) else None
    report.complete = records[-1].kind == "run_end" and chain.first_bad is None

    _cross_check(report, chain, list(egress), egress_public_keys or {})
    report.intact = not report.errors and report.suppressed_errors == 0
    report.ok = report.intact and report.complete
    return report


def _ledger_messages(
    report: VerificationReport, chain: _ChainResult, parties: Mapping[str, Any], coordinator: str
) -> tuple[dict[str, Counter], dict[tuple, list[int]], set[str]]:
    """Messages sent by each node according to the ledger's step records."""
    per_node: dict[str, Counter] = {}
    where: dict[tuple, list[int]] = {}
    steps: set[str] = set()
    for pos, payload in sorted(chain.payloads.items()):
        if chain.records[pos].kind != "step":
            continue
        if "step" not in payload:
            report._error(f"ledger record #{pos}: step record without a 'step' field")
            continue
        steps.add(str(payload["step"]))
        msgs = payload.get("messages", [])
        if not isinstance(msgs, list):
            report._error(f"ledger record #{pos}: 'messages' is not a list")
            continue
        for j, m in enumerate(msgs):
            key = _message_key(m, payload["step"]) if isinstance(m, dict) else None
            if key is None or not isinstance(m.get("sender"), str):
                report._error(f"ledger record #{pos}: message {j} lacks sender/recipient/kind/size/sha256")
                continue
            sender = m["sender"]
            if sender in parties:
                per_node.setdefault(sender, Counter())[key] += 1
                where.setdefault((sender, *key), []).append(pos)
            elif sender != coordinator:
                report._error(
                    f"ledger record #{pos}: message {j} sender {sender!r} is neither the "
                    "coordinator nor a party declared in run_start"
                )
    return per_node, where, steps


def _cross_check(
    report: VerificationReport, chain: _ChainResult, egress_paths: list, egress_keys: Mapping[str, Any]
) -> None:
    start = chain.payloads.get(0)
    if start is None:
        if egress_paths:
            report._error("cannot cross-check egress logs: ledger run_start is unreadable")
        return
    parties = start.get("parties", {})
    if not isinstance(parties, dict):
        report._error("ledger record #0: 'parties' is not a mapping")
        return
    coordinator = chain.records[0].writer
    segments = _segments(report, chain)
    per_node, where, ledger_steps = _ledger_messages(report, chain, parties, coordinator)
    failed_at = _failures(chain)
    seen: dict[str, str] = {}
    links: dict[str, _Links] = {}
    for path in egress_paths:
        node_check = _check_egress(report, Path(path), parties, egress_keys)
        if node_check is None:
            continue
        check, counter, egress_where, node_links = node_check
        if check.node not in seen:
            links[check.node] = node_links
        if check.node in seen:
            report._error(f"two egress logs for node {check.node!r}: {seen[check.node]} and {path}")
            continue
        seen[check.node] = str(path)
        report.egress.append(check)
        expected = per_node.get(check.node, Counter())
        check.messages_in_ledger = sum(expected.values())
        check.matched = sum((expected & counter).values())
        for key, n in sorted((expected - counter).items()):
            recs = where[(check.node, *key)]
            report._error(
                f"ledger record #{recs[0]}: message {_fmt(check.node, key)} is not in the "
                f"node's own egress log {path} ({n} missing)"
            )
        for key, n in sorted((counter - expected).items()):
            pos = egress_where[key][0]
            msg = (
                f"egress log {path} record #{pos}: node {check.node!r} sent {_fmt(check.node, key)} "
                f"which the ledger does not record ({n} unmatched)"
            )
            if not report.complete and key[2] not in ledger_steps:
                report.warnings.append(msg + " -- its step is past the end of the incomplete ledger")
            elif (check.node, key[2]) in failed_at:
                # the node logged its reply and was lost before the reply reached the coordinator,
                # which recorded the step without it and stopped the run naming that node
                report.warnings.append(
                    msg + f" -- sent at the step the ledger records {check.node!r} failing at "
                    f"(ledger record #{failed_at[(check.node, key[2])]}, failure): its reply never arrived"
                )
            elif key[2] not in ledger_steps and _segment(key[2]) in segments.interrupted:
                report.warnings.append(
                    msg + f" -- sent in the run segment interrupted at ledger record "
                    f"#{segments.interrupted[_segment(key[2])]} (run_interrupted), after its last recorded step"
                )
            else:
                report._error(msg)
    for node, counter in per_node.items():
        if node not in seen:
            report.warnings.append(
                f"no egress log given for node {node!r}: {sum(counter.values())} "
                "message(s) it sent were not cross-checked"
            )
    _cross_check_ingress(report, links, _step_order(chain), segments)


def _failures(chain: _ChainResult) -> dict[tuple[str, str], int]:
    """(party, step) -> ledger position of each ``failure`` record the coordinator wrote."""
    out: dict[tuple[str, str], int] = {}
    for pos, payload in sorted(chain.payloads.items()):
        if chain.records[pos].kind == "failure" and isinstance(payload.get("party"), str):
            out.setdefault((payload["party"], str(payload.get("step"))), pos)
    return out


def _step_order(chain: _ChainResult) -> dict[str, int]:
    """Each relayed step's position in the ledger (the order the coordinator ran them in)."""
    order: dict[str, int] = {}
    for pos, payload in sorted(chain.payloads.items()):
        if chain.records[pos].kind == "step" and "step" in payload:
            order.setdefault(str(payload["step"]), pos)
    return order


def _fmt_link(key: tuple) -> str:
    sender, recipient, kind, step, seq, size, sha = key
    return f"{kind!r} {sender}->{recipient} sent at step {step!r} (seq {seq}, {size} bytes, sha256 {str(sha)[:12]}...)"


SEGMENT_RE = re.compile(r"r([1-9][0-9]*):")


def _segment(step: str) -> int:
    """The run segment a step belongs to: ``r<n>:`` prefixes the steps of the n-th resumption."""
    m = SEGMENT_RE.match(step)
    return int(m.group(1)) if m else 0


@dataclass
class _Segments:
    """Where a resumed run's segments start: ``interrupted[n]`` is the ledger position of the
    ``run_interrupted`` record that ended segment ``n`` (and started segment ``n + 1``)."""

    interrupted: dict[int, int] = field(default_factory=dict)


def _segments(report: VerificationReport, chain: _ChainResult) -> _Segments:
    """Check a resumed run's segment records (numbered 1, 2, ... in order; no step of segment n
    before its ``run_interrupted``) and say where each interrupted segment ends."""
    seg = _Segments()
    current = 0
    for pos, payload in sorted(chain.payloads.items()):
        kind = chain.records[pos].kind
        if kind == "run_interrupted":
            n = payload.get("segment")
            if n != current + 1:
                report._error(f"ledger record #{pos}: run_interrupted starts segment {n!r}, expected {current + 1}")
                continue
            seg.interrupted[current] = pos
            current = n
        elif kind == "step" and "step" in payload and _segment(str(payload["step"])) != current:
            report._error(
                f"ledger record #{pos}: step {payload['step']!r} belongs to run segment "
                f"{_segment(str(payload['step']))}, but the ledger is in segment {current}"
            )
    return seg


def _cross_check_ingress(
    report: VerificationReport, links: dict[str, _Links], order: dict[str, int], segments: _Segments | None = None
) -> None:
    """Sender egress = recipient ingress, per envelope; names every drop, injection, alteration,
    replay and refusal with its step and parties.

    An envelope sent at step S that never reached its recipient R was dropped by the relay if R's
    own log shows R was served a later step (received, refused, answered or failed one): the
    relay had the chance to deliver it and did not. If R was never served again, the run stopped
    before delivery (an availability fault, which the coordinator may commit): a warning names it.
    """
    refused_at: set[tuple] = set()
    for node, lk in links.items():
        for pos, r in lk.refused:
            refused_at.add((r.get("sender"), node, r.get("sent_step"), r.get("seq")))
            report._error(
                f"egress log {lk.path} record #{pos}: node {node!r} refused an envelope claiming to be from "
                f"{r.get('sender')!r} at step {r.get('step')!r} (signed step {r.get('sent_step')!r}, seq "
                f"{r.get('seq')}): {r.get('reason')}"
            )
    for node, lk in links.items():
        for key, pos in sorted(lk.received.items(), key=lambda kv: kv[1]):
            sender = key[0]
            if sender not in links:
                report.warnings.append(f"node {node!r} received {_fmt_link(key)} but no log of {sender!r} was given")
            elif key not in links[sender].sent:
                report._error(
                    f"egress log {lk.path} record #{pos}: node {node!r} received {_fmt_link(key)} which "
                    f"{sender!r}'s own log does not record sending (injected, altered or replayed by the relay)"
                )
        for key, pos in sorted(lk.sent.items(), key=lambda kv: kv[1]):
            recipient = key[1]
            if recipient not in links or key in links[recipient].received:
                continue
            if (key[0], recipient, key[3], key[4]) in refused_at:
                continue  # reported above as a refusal
            msg = f"egress log {lk.path} record #{pos}: {_fmt_link(key)} never reached {recipient!r}"
            sent_at = order.get(key[3], -1)
            # a streamed step's own record follows its exchanges (``<step>.<m>``) in the ledger, but
            # the step began before them: serving it is not a later chance to deliver
            later = sorted(
                (order[s], s)
                for s in links[recipient].served
                if order.get(s, -1) > sent_at and not key[3].startswith(s + ".")
            )
            seg = _segment(key[3])
            if segments is not None and seg in segments.interrupted:
                # only a later step of the same segment could have delivered it: the segment's
                # in-flight envelopes were abandoned when its coordinator was lost, and the ledger says so
                later = [(o, s) for o, s in later if _segment(s) == seg] if key[3] in order else []
                if not later:
                    report.warnings.append(
                        msg + f" -- abandoned when run segment {seg} was interrupted (ledger record "
                        f"#{segments.interrupted[seg]}, run_interrupted)"
                    )
                    continue
            if later:
                report._error(
                    msg + f" although {recipient!r} was served step {later[0][1]!r} after it "
                    f"(dropped by the relay after step {key[3]!r})"
                )
            else:
                report.warnings.append(msg + " -- the run stopped before delivering it")


def _message_key(m: Mapping[str, Any], step: Any) -> tuple | None:
    """(recipient, kind, step, size, sha256) of a message description, or None if malformed."""
    recipient, kind, size, sha = m.get("recipient"), m.get("kind"), m.get("size"), m.get("sha256")
    if not (
        isinstance(recipient, str)
        and isinstance(kind, str)
        and isinstance(sha, str)
        and type(size) is int
        and isinstance(step, (str, int))
        and type(step) is not bool
    ):
        return None
    return (recipient, kind, str(step), size, sha)


def _fmt(node: str, key: tuple) -> str:
    recipient, kind, step, size, sha = key
    return f"{kind!r} {node}->{recipient} step {step!r} ({size} bytes, sha256 {str(sha)[:12]}...)"


def _link_key(node: str, payload: Mapping[str, Any], received: bool) -> tuple | None:
    """(sender, recipient, kind, sent step, seq, size, sha256) of a sent or received record."""
    seq, size, sha, kind = payload.get("seq"), payload.get("size"), payload.get("sha256"), payload.get("kind")
    peer = payload.get("sender" if received else "recipient")
    step = payload.get("sent_step" if received else "step")
    if type(seq) is not int or type(size) is not int or not all(isinstance(v, str) for v in (sha, kind, peer, step)):
        return None
    return (peer, node, kind, step, seq, size, sha) if received else (node, peer, kind, step, seq, size, sha)


def _check_egress(
    report: VerificationReport, path: Path, parties: Mapping[str, Any], egress_keys: Mapping[str, Any]
) -> tuple[EgressCheck, Counter, dict, _Links] | None:
    try:
        records = read_records(path)
    except LedgerFileError as exc:
        report._error(f"egress log: {exc}")
        return None
    if not records:
        report._error(f"egress log {path} has no records")
        return None
    first = records[0]
    node = first.writer
    if first.log != LOG_EGRESS:
        report._error(f"{path} is not an egress log (it is a {first.log!r} file)")
        return None
    if not isinstance(node, str) or node not in parties:
        report._error(
            f"egress log {path} is from node {node!r}, which is not a party declared in the ledger's run_start"
        )
        return None
    if first.run_id != report.run_id:
        report._error(f"egress log {path} belongs to run {first.run_id!r}, not {report.run_id!r}")
        return None
    info = parties[node] if isinstance(parties[node], dict) else {}
    listed = info.get("egress_pubkey")
    try:
        if node in egress_keys:
            pub = _resolve_key(egress_keys[node])
            if listed is not None and listed != public_key_hex(pub):
                report._error(
                    f"egress log {path}: the auditor's key for node {node!r} differs from the "
                    "egress_pubkey the ledger's run_start lists for it"
                )
        elif isinstance(listed, str):
            pub = public_key_from_hex(listed)
        else:
            report._error(f"egress log {path}: run_start lists no egress_pubkey for node {node!r} and none was given")
            return None
    except LedgerError as exc:
        report._error(f"egress log {path}: {exc}")
        return None
    declared, _ = _declared_key(first, "node_pubkey")
    if declared != public_key_hex(pub):
        report._error(f"egress log {path} record #0: node_pubkey is not the node's registered key")
    chain = _check_chain(
        records, log=LOG_EGRESS, pub=pub, start_kind=EGRESS_START, key_label=f"node {node!r}'s egress key"
    )
    for pos in sorted(chain.bad):
        for reason in chain.bad[pos]:
            report._error(f"egress log {path} record #{pos}: {reason}")
    check = EgressCheck(node=node, path=str(path), records=len(records))
    counter: Counter = Counter()
    where: dict[tuple, list[int]] = {}
    links = _Links(str(path))
    for pos, payload in sorted(chain.payloads.items()):
        kind = records[pos].kind
        if kind in (EGRESS_START, EGRESS_COSIGNED, EGRESS_END):  # heads: checked by fedcredit.ledger.cosign
            continue
        if kind in (EGRESS_SENT, EGRESS_RECEIVED, EGRESS_REFUSED, EGRESS_FAILED) and "step" in payload:
            links.served.add(str(payload["step"]))
        if kind == EGRESS_FAILED:
            continue
        if kind == EGRESS_REFUSED:
            check.refused += 1
            links.refused.append((pos, payload))
            continue
        if kind in (EGRESS_SENT, EGRESS_RECEIVED) and "seq" in payload:
            lkey = _link_key(node, payload, kind == EGRESS_RECEIVED)
            if lkey is None:
                report._error(f"egress log {path} record #{pos}: {kind} record lacks peer/kind/step/seq/size/sha256")
                continue
            target = links.received if kind == EGRESS_RECEIVED else links.sent
            if lkey in target:
                report._error(f"egress log {path} record #{pos}: the same envelope is logged twice ({_fmt_link(lkey)})")
            target[lkey] = pos
            if kind == EGRESS_RECEIVED:
                check.received += 1
                continue
        if kind != EGRESS_SENT:
            report._error(f"egress log {path} record #{pos}: unknown kind {records[pos].kind!r}")
            continue
        key = _message_key(payload, payload.get("step"))
        if key is None:
            report._error(f"egress log {path} record #{pos}: sent record lacks recipient/kind/step/size/sha256")
            continue
        counter[key] += 1
        where.setdefault(key, []).append(pos)
    check.messages_in_egress = sum(counter.values())
    return check, counter, where, links
