"""Where the coordinator records what a run did: one :class:`Recorder` interface, two kinds of record.

The relay (and the horizontal workflows) call :meth:`Recorder.step` with what crossed each
boundary (sender, recipient, message kind, size, SHA-256 — never payloads) and
:meth:`Recorder.event` with what happened (failures, consent checks, model releases).

* :class:`LedgerRecorder` writes the signed compliance ledger of a production run; nodes log the
  same facts in their own signed egress logs, and ``fedcredit ledger verify --egress`` checks
  that the two agree.
* :class:`MemoryRecorder` keeps the same records in lists, for the many scenarios of a sweep
  or a test that need no ledger.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import fedcredit
from fedcredit.config import Scenario
from fedcredit.ledger import (
    Ledger,
    LedgerError,
    generate_signing_key,
    public_key_hex,
    read_records,
    save_private_key,
    save_public_key,
)
from fedcredit.ledger.cosign import HeadIssuer

log = logging.getLogger(__name__)


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{fedcredit.__version__}+{rev}" if rev else fedcredit.__version__


class Recorder(ABC):
    """What the coordinator's protocol loops record; subclasses decide where it goes."""

    def step(
        self,
        step: str,
        round: int,
        messages: list[dict],
        metrics: dict | None = None,
        participants: list[str] | None = None,
    ) -> None:
        """One protocol step: what crossed a boundary (``messages``) and who took part."""
        senders = sorted({m["sender"] for m in messages} | set(participants or []))
        self._write(
            "step",
            {"step": step, "round": round, "messages": messages, "participants": senders, "metrics": metrics or {}},
        )

    def event(self, kind: str, payload: dict) -> None:
        """Something that happened (a failure, a dropout, a consent check, a model release)."""
        self._write(kind, payload)

    def announce_heads(self, parties: list[str]) -> dict[str, dict]:
        """At a phase boundary: each party's signed tree head and proofs ({} when nothing is logged)."""
        return {}

    @abstractmethod
    def _write(self, kind: str, payload: dict) -> None: ...


@dataclass
class MemoryRecorder(Recorder):
    """Keeps step records and events in lists (no ledger, no keys)."""

    steps: list[dict] = field(default_factory=list)
    events: list[tuple[str, dict]] = field(default_factory=list)

    def _write(self, kind: str, payload: dict) -> None:
        if kind == "step":
            self.steps.append(payload)
        else:
            self.events.append((kind, payload))

    def events_of(self, kind: str) -> list[dict]:
        return [p for k, p in self.events if k == kind]


class LedgerRecorder(Recorder):
    """Writes the run's signed ledger (``ledger.sqlite`` in ``out_dir``)."""

    def __init__(self, out_dir: Path, scenario: Scenario, signing_key: Ed25519PrivateKey | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex
        self.scenario = scenario
        if signing_key is None:
            signing_key = generate_signing_key()
            save_private_key(signing_key, self.out_dir / "coordinator_key.pem")
        save_public_key(signing_key.public_key(), self.out_dir / "coordinator_pub.pem")
        self.key = signing_key
        self.path = self.out_dir / "ledger.sqlite"
        self.ledger = Ledger.create(self.path, signing_key, run_id=self.run_id, writer="coordinator")
        self.closed = False
        self.started = False
        # the ledger mirrored into an RFC 9162 Merkle log; one signed head per phase boundary
        self.heads = HeadIssuer(self.run_id, signing_key)
        self.parties: list[str] = []
        # set by the relay (parties.common.introduction): gives every party the final head
        self.on_close: Callable[[dict[str, dict]], None] | None = None

    segment = 0  # n > 0: this recorder continues the run's ledger for its n-th resumed segment
    original_parties: dict[str, dict] = {}

    @classmethod
    def resume(
        cls, out_dir: Path, scenario: Scenario, signing_key: Ed25519PrivateKey, *, segment: int, checkpoint: str
    ) -> LedgerRecorder:
        """Continue the interrupted run's ledger in ``out_dir`` (same run id, same key).

        Writes ``run_interrupted`` (which record the lost coordinator wrote last, the checkpoint
        resumed from); the next introduction writes ``run_resumed`` with the new segment's
        parties instead of a second ``run_start``.
        """
        self = cls.__new__(cls)
        self.out_dir, self.scenario, self.key = Path(out_dir), scenario, signing_key
        self.path = self.out_dir / "ledger.sqlite"
        records = read_records(self.path)
        if not records or records[0].kind != "run_start":
            raise LedgerError(f"{self.path}: no run_start record: nothing to resume")
        if records[-1].kind == "run_end":
            raise LedgerError(
                f"{self.path}: the run already ended ({records[-1].payload.get('status')}): nothing to resume"
            )
        if records[0].payload.get("config_hash") != scenario.config_hash:
            raise LedgerError(f"{self.path}: the run was started with another scenario (config hash differs)")
        self.ledger = Ledger.open(self.path, signing_key)
        self.run_id = self.ledger.run_id
        self.original_parties = dict(records[0].payload.get("parties") or {})
        self.segment = segment
        self.closed, self.started = False, True
        self.heads = HeadIssuer(self.run_id, signing_key, records)  # the Merkle mirror, rebuilt from the file
        self.parties, self.on_close = [], None
        self._append(
            "run_interrupted",
            {
                "segment": segment,
                "last_record": {"seq": records[-1].seq, "kind": records[-1].kind, "hash": records[-1].hash},
                "checkpoint": checkpoint,
                "code_version": code_version(),
            },
        )
        return self

    def run_start(self, parties: dict[str, dict]) -> None:
        s = self.scenario
        if self.segment:
            self.parties = sorted(parties)
            self._append("run_resumed", {"segment": self.segment, "parties": parties})
            return
        self.started = True
        self.parties = sorted(parties)
        self._append(
            "run_start",
            {
                "config_hash": s.config_hash,
                "scenario": s.name,
                "mode": s.mode,
                "purpose": s.purpose,
                "code_version": code_version(),
                "parties": parties,
                "coordinator_pubkey": public_key_hex(self.key),
            },
        )

    def _write(self, kind: str, payload: dict) -> None:
        if kind != "step" and not self.started:  # failed before the parties were introduced: still a valid ledger
            self.run_start({})
        self._append(kind, payload)

    def _append(self, kind: str, payload: dict) -> None:
        self.heads.add(self.ledger.append(kind, payload))

    def announce_heads(self, parties: list[str]) -> dict[str, dict]:
        return self.heads.announce(parties)

    def close(self, status: str, summary: dict | None = None) -> None:
        if self.closed:
            return
        if not self.started:
            self.run_start({})
        self._append("run_end", {"status": status, **(summary or {})})
        self.ledger.close()
        self.closed = True
        if self.on_close is not None and self.parties:  # the final head: every party co-signs and ends its log
            try:
                self.on_close(self.heads.announce(self.parties))
            except Exception:  # noqa: BLE001 - the ledger is closed; a party that missed it shows at verify
                log.exception("could not give the parties the final tree head")
