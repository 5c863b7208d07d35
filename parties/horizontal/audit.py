"""What crossed a boundary in a horizontal run: one description used by coordinator and banks.

Horizontal rounds run through Flower's own workflows (DefaultWorkflow, SecAggPlusWorkflow), so
the coordinator cannot record messages where it builds them. Instead :class:`RecordingGrid`
wraps the Grid: every message that goes out and every reply that comes back is described as
``(sender, recipient, kind, step, size, sha256)`` and handed to the ledger recorder, and every
error reply or missing reply becomes a ledger event naming the bank. Banks describe their own
replies with the same functions (:func:`classify`, :func:`digest`) for their egress logs, so the
two logs can be cross-checked.

``sha256`` is Flower's content object id (a SHA-256 Merkle hash over the deflated records:
identical at sender and receiver, since Flower's transport is built on it); ``size`` is the sum
of the deflated object sizes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import InflatableObject

from parties.common.delegating import DelegatingGrid
from parties.horizontal.flower_legacy import secagg_stage

log = logging.getLogger(__name__)

COORDINATOR = "coordinator"
QUERY_STEPS = {
    "query.horizontal_setup": ("horizontal.setup", "SetupRequest", "SetupReply"),
    "query.horizontal_keygen": ("horizontal.ckks_keygen", "KeygenRequest", "KeygenReply"),
    "query.horizontal_install": ("horizontal.ckks_install", "InstallRequest", "InstallReply"),
    "query.horizontal_release": ("horizontal.release", "ReleaseRequest", "ReleaseReply"),
}


def classify(message_type: str, request: RecordDict) -> tuple[str, str, str]:
    """(step, request kind, reply kind) of a request, computed from what both ends see.

    Must be called on the request *before* Flower's secaggplus_mod consumes its stage field.
    """
    if message_type in QUERY_STEPS:
        return QUERY_STEPS[message_type]
    if message_type == "train":
        stage = secagg_stage(message_type, request)
        if stage is not None:
            return f"horizontal.secagg.{stage}", f"SecAggPlus.{stage}.request", f"SecAggPlus.{stage}"
        return "horizontal.fit", "FitIns", "FitRes"
    return f"horizontal.{message_type}", "Request", "Reply"


def _deflated_size(obj: InflatableObject, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = len(obj.deflate())
    for child in (obj.children or {}).values():
        size += _deflated_size(child, seen)
    return size


def digest(content: RecordDict) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a message's content."""
    return _deflated_size(content, set()), content.object_id


@dataclass
class Captured:
    """A message as the coordinator sent ("out") or received ("in") it; kept only when capturing
    (privacy tests, audits)."""

    round: int
    step: str
    party: str
    direction: str
    content: RecordDict


@dataclass
class _Pending:
    step: str
    round: int
    entry: dict  # sender/recipient: party name, or node id resolved in take()


def _snapshot(content: RecordDict) -> RecordDict:
    """An independent copy of a message's content as it crossed (its wire form, parsed back)."""
    from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

    return recorddict_from_proto(recorddict_to_proto(content))


@dataclass
class RecordingGrid(DelegatingGrid):
    """A Grid that describes traffic for the ledger and applies a default timeout.

    ``names`` maps node ids to party names (unknown nodes appear as ``node-<id>``). ``on_event``
    receives ``(kind, payload)`` for error replies ("update_rejected" when a bank's own checks
    refused its update, otherwise "dropout") and for requests that got no reply in time.
    """

    inner: Grid
    names: dict[int, str] = field(default_factory=dict)
    default_timeout: float | None = None
    on_event: Callable[[str, dict], None] | None = None
    capture: bool = False
    round: int = 0
    calls: int = 0
    captured: list[Captured] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)  # banks' round-policy refusals (parties.horizontal.policy)
    _pending: list[_Pending] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def name(self, node_id: int) -> str:
        return self.names.get(node_id, f"node-{node_id}")

    # -- Grid interface: delegated (DelegatingGrid), except that replies must be recorded --
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("horizontal workflows use send_and_receive (so every reply is recorded)")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("horizontal workflows use send_and_receive (so every reply is recorded)")

    # -- recording ---------------------------------------------------------------------
    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        msgs = list(messages)
        self.calls += 1
        sent: dict[int, tuple[str, str, str]] = {}
        rnd = self.round
        for m in msgs:
            dst = m.metadata.dst_node_id
            step, req_kind, rep_kind = classify(m.metadata.message_type, m.content)
            sent[dst] = (step, req_kind, rep_kind)
            size, sha = digest(m.content)
            if self.capture:
                self.captured.append(
                    Captured(round=rnd, step=step, party=self.name(dst), direction="out", content=_snapshot(m.content))
                )
            self._add(
                step, rnd, {"sender": COORDINATOR, "recipient": dst, "kind": req_kind, "size": size, "sha256": sha}
            )
        replies = list(
            self.inner.send_and_receive(msgs, timeout=timeout if timeout is not None else self.default_timeout)
        )
        answered = set()
        for r in replies:
            src = r.metadata.src_node_id
            answered.add(src)
            step, _, rep_kind = sent.get(src, ("horizontal.unknown", "", "Reply"))
            party = self.name(src)
            if r.has_error():
                reason = str(r.error.reason)
                kind = "update_rejected" if "UpdateRejected" in reason or "CkksContextMismatch" in reason else "dropout"
                self._event(kind, {"party": party, "round": rnd, "step": step, "reason": reason[-600:]})
                if "PolicyViolation" in reason:
                    self.refusals.append({"party": party, "round": rnd, "step": step, "reason": reason[-600:]})
                continue
            size, sha = digest(r.content)
            self._add(
                step, rnd, {"sender": src, "recipient": COORDINATOR, "kind": rep_kind, "size": size, "sha256": sha}
            )
            if self.capture:
                # a copy: Flower's workflow consumes the reply's arrays (keep_input=False) after this
                self.captured.append(
                    Captured(round=rnd, step=step, party=party, direction="in", content=_snapshot(r.content))
                )
        for dst in sorted(set(sent) - answered):
            self._event(
                "dropout",
                {"party": self.name(dst), "round": rnd, "step": sent[dst][0], "reason": "no reply within the timeout"},
            )
        return replies

    def _add(self, step: str, rnd: int, entry: dict) -> None:
        with self._lock:
            self._pending.append(_Pending(step, rnd, entry))

    def _event(self, kind: str, payload: dict) -> None:
        if self.on_event is None:  # e.g. spare nodes declining the set-up: not part of the run
            log.debug("%s: %s", kind, payload)
            return
        log.warning("%s: %s", kind, payload)
        self.on_event(kind, payload)

    def take(self) -> list[tuple[str, int, list[dict]]]:
        """Drain the recorded messages grouped by (step, round), in first-seen order.

        Node ids are turned into party names only here, so traffic recorded before the nodes
        introduced themselves (the set-up step) still carries the right names."""
        with self._lock:
            pending, self._pending = self._pending, []
        groups: dict[tuple[str, int], list[dict]] = {}
        for p in pending:
            e = dict(p.entry)
            for key in ("sender", "recipient"):
                if isinstance(e[key], int):
                    e[key] = self.name(e[key])
            groups.setdefault((p.step, p.round), []).append(e)
        return [(step, rnd, entries) for (step, rnd), entries in groups.items()]
