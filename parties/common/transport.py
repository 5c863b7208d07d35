"""How relay traffic rides on Flower messages (shared by the coordinator and the nodes).

One Flower message carries one *step* for one node: the envelopes addressed to it (``inbox``),
and its reply carries the envelopes it sends (``outbox``), whether it has finished the phase,
and a small JSON summary (aggregate numbers only, e.g. an intersection size or a loss). All of it
is bytes inside a ``ConfigRecord`` so both ends can hash exactly what crossed the boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, RecordDict

from protocols.common import wire
from protocols.common.party import Envelope
from protocols.common.signing import SignedEnvelope

RECORD = "fc"
HELLO = "query.fc_hello"
INIT = "query.fc_init"
STEP = "query.fc_step"
FINISH = "query.fc_finish"
CLOSE = "query.fc_close"  # the run's final tree head: co-sign it and end the node log
FINISHED = "finished_summary"  # key of a summary that carries the party's phase result


@dataclass
class RelayBatch:
    """Envelopes in flight to or from one node (wire-encoded as a whole), with what authenticates
    each (:mod:`protocols.common.signing`: phase and step sent at, stream seq, signature)."""

    senders: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    signatures: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, envelopes: list[Envelope]) -> RelayBatch:
        signed = [
            e if isinstance(e, SignedEnvelope) else SignedEnvelope(e.sender, e.recipient, e.payload) for e in envelopes
        ]
        return cls(
            [e.sender for e in signed],
            [e.recipient for e in signed],
            [e.payload for e in signed],
            [e.phase for e in signed],
            [e.step for e in signed],
            [e.seq for e in signed],
            [e.signature for e in signed],
        )

    def envelopes(self) -> list[SignedEnvelope]:
        columns = (self.senders, self.recipients, self.payloads, self.phases, self.steps, self.seqs, self.signatures)
        if len({len(c) for c in columns}) != 1:
            raise wire.WireError("relay batch fields have different lengths")
        return [SignedEnvelope(*row) for row in zip(*columns)]


@dataclass
class NodeReply:
    """What one node answers to one step: the envelopes it sends, whether it is done, its summary."""

    outbox: list[Envelope]
    finished: bool
    summary: dict


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=float).encode()


def _bytes(rec: ConfigRecord, key: str) -> bytes:
    """One bytes field of a relay record, refused if it holds anything else."""
    value = rec[key]
    if not isinstance(value, bytes):
        raise wire.WireError(f"relay record field {key!r} is {type(value).__name__}, not bytes")
    return value


def request(
    *,
    phase: str,
    step: str,
    params: dict | None = None,
    inbox: list[Envelope] | None = None,
    session: dict | None = None,
    tlog: dict | None = None,
) -> RecordDict:
    """``session``: the run id and every party's hello nonce, from which each node derives the
    session its envelopes are signed for (:func:`protocols.common.signing.session_id`)."""
    return RecordDict(
        {
            RECORD: ConfigRecord(
                {
                    "phase": phase,
                    "step": step,
                    "params": canonical_json(params or {}),
                    "inbox": wire.encode(RelayBatch.of(inbox or [])),
                    "session": canonical_json(session or {}),
                    "tlog": canonical_json(tlog or {}),
                }
            )
        }
    )


def read_session(content: RecordDict) -> dict:
    """The session announcement of a request ({} if it carries none, e.g. ``hello``)."""
    rec = content.config_records[RECORD]
    return json.loads(_bytes(rec, "session")) if "session" in rec else {}


def read_tlog(content: RecordDict) -> dict:
    """The tree head (and this node's proofs) a request announces ({} if none: a step inside a phase)."""
    rec = content.config_records[RECORD]
    return json.loads(_bytes(rec, "tlog")) if "tlog" in rec else {}


def read_request(content: RecordDict) -> tuple[str, str, dict, list[SignedEnvelope]]:
    rec = content.config_records[RECORD]
    return (
        str(rec["phase"]),
        str(rec["step"]),
        json.loads(_bytes(rec, "params")),
        wire.decode(_bytes(rec, "inbox"), RelayBatch).envelopes(),
    )


def reply(*, outbox: list[Envelope], finished: bool, summary: dict) -> RecordDict:
    return RecordDict(
        {
            RECORD: ConfigRecord(
                {
                    "outbox": wire.encode(RelayBatch.of(outbox)),
                    "finished": finished,
                    "summary": canonical_json(summary),
                }
            )
        }
    )


def read_reply(content: RecordDict) -> tuple[list[SignedEnvelope], bool, dict, bytes]:
    rec = content.config_records[RECORD]
    summary_bytes = _bytes(rec, "summary")
    return (
        wire.decode(_bytes(rec, "outbox"), RelayBatch).envelopes(),
        bool(rec["finished"]),
        json.loads(summary_bytes),
        summary_bytes,
    )
