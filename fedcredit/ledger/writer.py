"""Writers: the coordinator's run :class:`Ledger` and a data node's :class:`EgressLog`.

Both append hash-chained, Ed25519-signed :class:`~fedcredit.ledger.records.Record` s to their own
SQLite file. The ledger is what the coordinator claims happened; each egress log is what one data
node itself says it sent. An auditor cross-checks the two with :func:`fedcredit.ledger.verify`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcredit.ledger.keys import public_key_from_hex, public_key_hex, sign_hash
from fedcredit.ledger.records import (
    EGRESS_COSIGNED,
    EGRESS_END,
    EGRESS_FAILED,
    EGRESS_RECEIVED,
    EGRESS_REFUSED,
    EGRESS_SENT,
    EGRESS_START,
    GENESIS_HASH,
    KIND_RE,
    LOG_EGRESS,
    LOG_LEDGER,
    LedgerError,
    Record,
    canonical_json,
    message_digest,
    record_hash,
    utc_timestamp,
)
from fedcredit.ledger.store import SqliteStore

log = logging.getLogger(__name__)


def _make_record(
    key: Ed25519PrivateKey,
    *,
    log_name: str,
    run_id: str,
    writer: str,
    kind: str,
    payload: Mapping[str, Any],
    head: Record | None,
) -> Record:
    if not isinstance(payload, Mapping):
        raise LedgerError(f"record payload must be a mapping, got {type(payload).__name__}")
    text = canonical_json(payload)
    seq = 0 if head is None else head.seq + 1
    prev = GENESIS_HASH if head is None else head.hash
    ts = utc_timestamp()
    h = record_hash(
        log=log_name, run_id=run_id, seq=seq, kind=kind, ts=ts, writer=writer, prev_hash=prev, payload_text=text
    )
    return Record(
        log=log_name,
        seq=seq,
        run_id=run_id,
        kind=kind,
        ts=ts,
        writer=writer,
        prev_hash=prev,
        payload_text=text,
        hash=h,
        sig=sign_hash(key, h),
    )


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}")


def _check_name(value: str, what: str) -> str:
    """Names that enter the signed header are plain ASCII without JSON escapes, so an auditor's
    re-implementation of the header's canonical JSON is a simple string concatenation."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise LedgerError(
            f"{what} {value!r} must match {NAME_RE.pattern} (letters, digits, . _ : @ + -; at most 200 characters)"
        )
    return value


class _SignedLog:
    """What the run ledger and an egress log share: one signing key, one SQLite store, closed once,
    and records signed for one run by one writer."""

    WHAT = "log"  # for the error when appending to a closed log
    LOG = ""  # the log name in each record's header: LOG_LEDGER or LOG_EGRESS

    def __init__(self, store: SqliteStore, key: Ed25519PrivateKey, run_id: str, writer: str) -> None:
        self._store: SqliteStore | None = store
        self._key = key
        self._path = store.path
        self.run_id = run_id
        self._writer = writer

    def _record(self, kind: str, payload: Mapping[str, Any], head: Record | None) -> Record:
        return _make_record(
            self._key, log_name=self.LOG, run_id=self.run_id, writer=self._writer, kind=kind, payload=payload, head=head
        )

    @property
    def path(self) -> Path:
        return self._path

    def _open_store(self) -> SqliteStore:
        if self._store is None:
            raise LedgerError(f"{self.WHAT} is closed")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Ledger(_SignedLog):
    """The coordinator's append-only run ledger (one SQLite file per run).

    The first record must be ``run_start``; nothing may follow ``run_end``. Every :meth:`append`
    is committed before it returns, so a crash loses at most the record being written.
    """

    WHAT = "ledger"
    LOG = LOG_LEDGER

    def __init__(
        self, store: SqliteStore, key: Ed25519PrivateKey, run_id: str, writer: str, head: Record | None, ended: bool
    ) -> None:
        super().__init__(store, key, run_id, writer)
        self.writer = writer
        self.pubkey_hex = public_key_hex(key)
        self._head = head
        self._ended = ended

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], signing_key: Ed25519PrivateKey, *, run_id: str, writer: str = "coordinator"
    ) -> Ledger:
        """Create a new ledger file; refuses to touch an existing one (a ledger is never reused)."""
        p = Path(path)
        _check_name(run_id, "run_id")
        _check_name(writer, "writer")
        for existing in (p, Path(f"{p}-wal"), Path(f"{p}-journal")):
            if existing.exists():
                raise LedgerError(f"refusing to overwrite existing file {existing}: each run gets a new ledger file")
        store = SqliteStore(p, log=LOG_LEDGER, create=True)
        return cls(store, signing_key, run_id, writer, None, False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], signing_key: Ed25519PrivateKey) -> Ledger:
        """Re-open an existing ledger to continue it (e.g. after a coordinator restart).

        Only the key that signed ``run_start`` may continue the chain.
        """
        store = SqliteStore(path, log=LOG_LEDGER, create=False)
        with store.transaction() as conn:
            first, head = store.first(conn), store.head(conn)
        if first is None or first.log != LOG_LEDGER or first.kind != "run_start":
            store.close()
            raise LedgerError(f"{path}: not a run ledger (no run_start record)")
        declared = first.payload.get("coordinator_pubkey")
        if declared != public_key_hex(signing_key):
            store.close()
            raise LedgerError(f"{path}: the signing key is not the key declared in run_start")
        return cls(store, signing_key, first.run_id, first.writer, head, head is not None and head.kind == "run_end")

    def append(self, kind: str, payload: Mapping[str, Any]) -> Record:
        """Sign and commit one record; returns it as stored."""
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise LedgerError(f"record kind {kind!r} must match {KIND_RE.pattern}")
        store = self._open_store()
        payload = dict(payload)
        if kind == "run_start":
            declared = payload.setdefault("coordinator_pubkey", self.pubkey_hex)
            if declared != self.pubkey_hex:
                raise LedgerError("run_start declares a coordinator_pubkey that is not the ledger's signing key")
            _check_parties(payload.get("parties", {}))

        def build(head: Record | None) -> Record:
            if head is None and kind != "run_start":
                raise LedgerError(f"the first ledger record must be run_start, not {kind!r}")
            if head is not None and kind == "run_start":
                raise LedgerError("run_start may only be the first record")
            if head is not None and head.kind == "run_end":
                raise LedgerError(f"ledger {self.path} already has run_end; cannot append {kind!r}")
            return self._record(kind, payload, head)

        rec = store.append(build)
        self._head = rec
        self._ended = kind == "run_end"
        log.debug("ledger %s: #%d %s", self.path.name, rec.seq, kind)
        return rec

    @property
    def head(self) -> Record | None:
        """The last record written by this handle (its hash identifies the whole chain so far)."""
        return self._head


def _check_parties(parties: Any) -> None:
    if not isinstance(parties, Mapping):
        raise LedgerError("run_start 'parties' must be a mapping {name: {role, egress_pubkey}}")
    for name, info in parties.items():
        if not isinstance(info, Mapping):
            raise LedgerError(f"run_start party {name!r}: expected a mapping with role/egress_pubkey")
        pk = info.get("egress_pubkey")
        if pk is not None:
            public_key_from_hex(pk)


class EgressLog(_SignedLog):
    """A data node's own signed log of every payload it sent and received (hash and size only,
    never the bytes); refused envelopes are logged with the reason.

    Sent records carry the envelope's stream sequence number; received and refused records carry
    the sender, the step the sender signed it at, its seq, size and SHA-256, so an auditor can
    match every sender egress record with its recipient ingress record.

    Opening an existing log for the same run and node appends to it, because in Flower each
    message-handler call is a fresh invocation that opens, appends and closes.
    """

    WHAT = "egress log"
    LOG = LOG_EGRESS

    def __init__(self, store: SqliteStore, key: Ed25519PrivateKey, run_id: str, node: str) -> None:
        super().__init__(store, key, run_id, node)
        self.node = node

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], signing_key: Ed25519PrivateKey, *, run_id: str, node: str
    ) -> EgressLog:
        """Create the node's egress log, or open it for appending if it belongs to this run/node."""
        _check_name(run_id, "run_id")
        _check_name(node, "node")
        p = Path(path)
        store = SqliteStore(p, log=LOG_EGRESS, create=True)
        pub = public_key_hex(signing_key)
        try:
            with store.transaction() as conn:
                first = store.first(conn)
                if first is None:
                    rec = _make_record(
                        signing_key,
                        log_name=LOG_EGRESS,
                        run_id=run_id,
                        writer=node,
                        kind=EGRESS_START,
                        payload={"node": node, "node_pubkey": pub},
                        head=None,
                    )
                    store.insert(conn, rec)
                else:
                    _check_same_log(p, first, run_id=run_id, node=node, pub=pub)
        except BaseException:
            store.close()
            raise
        return cls(store, signing_key, run_id, node)

    def record_sent(
        self, *, kind: str, recipient: str, step: str | int, payload: bytes, seq: int | None = None
    ) -> Record:
        """Log that ``payload`` (the exact bytes sent) went to ``recipient`` at ``step``."""
        digest, size = message_digest(payload)
        return self.record_sent_digest(kind=kind, recipient=recipient, step=step, sha256=digest, size=size, seq=seq)

    def record_sent_digest(
        self, *, kind: str, recipient: str, step: str | int, sha256: str, size: int, seq: int | None = None
    ) -> Record:
        """As :meth:`record_sent` when only the digest and size are at hand."""
        if not isinstance(kind, str) or not kind or not isinstance(recipient, str) or not recipient:
            raise LedgerError("message kind and recipient must be non-empty strings")
        entry: dict[str, Any] = {"kind": kind, "recipient": recipient, "step": str(step), "size": int(size)}
        entry["sha256"] = sha256
        if seq is not None:
            entry["seq"] = int(seq)
        return self._append(EGRESS_SENT, entry)

    def record_received(self, *, kind: str, sender: str, step: str, sent_step: str, seq: int, payload: bytes) -> Record:
        """Log an envelope this node accepted at ``step`` (``sent_step``: the step its sender signed)."""
        digest, size = message_digest(payload)
        entry = {"kind": kind, "sender": sender, "step": step, "sent_step": sent_step, "seq": int(seq)}
        return self._append(EGRESS_RECEIVED, {**entry, "size": size, "sha256": digest})

    def record_refused(
        self, *, sender: str, step: str, sent_step: str, seq: int, payload: bytes, reason: str
    ) -> Record:
        """Log an envelope this node refused at ``step`` and why (bad signature, replay, gap...)."""
        digest, size = message_digest(payload)
        entry = {"sender": sender, "step": step, "sent_step": sent_step, "seq": int(seq), "reason": reason[:1000]}
        return self._append(EGRESS_REFUSED, {**entry, "size": size, "sha256": digest})

    def record_failed(self, *, step: str, reason: str) -> Record:
        """Log that this node was asked to do ``step`` and failed (so an auditor knows it was served)."""
        return self._append(EGRESS_FAILED, {"step": step, "reason": reason[:1000]})

    def record_cosigned(
        self, *, step: str, head: Mapping[str, Any], coordinator_pubkey: str, cosignature: str
    ) -> Record:
        """Log a coordinator tree head this node checked and co-signed (kept: the auditor's evidence)."""
        entry = {"at": step, "head": dict(head), "coordinator_pubkey": coordinator_pubkey, "cosignature": cosignature}
        return self._append(EGRESS_COSIGNED, entry)

    def record_end(self, *, status: str, head_size: int | None) -> Record:
        """The signed last record: without it an auditor knows the log was truncated."""
        return self._append(EGRESS_END, {"status": status[:1000], "head_size": head_size})

    def _append(self, kind: str, entry: dict[str, Any]) -> Record:
        if self._batch is not None:  # inside batch(): committed together when it ends
            self._batch.append((kind, entry))
            return self._pending(kind, entry)
        store = self._open_store()

        def build(head: Record | None) -> Record:
            if head is None:
                raise LedgerError(f"{self.path}: egress log lost its egress_start record")
            return self._record(kind, entry, head)

        return store.append(build)

    _batch: list[tuple[str, dict[str, Any]]] | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Records appended inside are chained, signed and committed in one transaction when the
        block ends (one SQLite commit per node step instead of one per record). If the block
        raises, what was appended is still committed before the exception propagates: a node's
        log keeps what it received even when its step then fails."""
        self._batch = []
        try:
            yield
        finally:
            entries, self._batch = self._batch, None
            if entries:
                store = self._open_store()
                with store.transaction() as conn:
                    head = store.head(conn)
                    if head is None:
                        raise LedgerError(f"{self.path}: egress log lost its egress_start record")
                    for kind, entry in entries:
                        head = self._record(kind, entry, head)
                        store.insert(conn, head)

    def _pending(self, kind: str, entry: dict[str, Any]) -> Record:
        """A stand-in for a record queued in a batch (its seq, hash and signature come at commit)."""
        return Record(
            log=self.LOG,
            seq=-1,
            run_id=self.run_id,
            kind=kind,
            ts="",
            writer=self._writer,
            prev_hash="",
            payload_text=canonical_json(entry),
            hash="",
            sig="",
        )


def _check_same_log(path: Path, first: Record, *, run_id: str, node: str, pub: str) -> None:
    if first.log != LOG_EGRESS or first.kind != EGRESS_START:
        raise LedgerError(f"{path} exists and is not an egress log")
    if first.run_id != run_id:
        raise LedgerError(
            f"{path} is the egress log of run {first.run_id!r}, not {run_id!r}: use one egress log file per run"
        )
    if first.writer != node:
        raise LedgerError(f"{path} is the egress log of node {first.writer!r}, not {node!r}")
    if first.payload.get("node_pubkey") != pub:
        raise LedgerError(f"{path} was started with another signing key than this node's")
