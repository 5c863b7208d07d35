"""The coordinator's side of the compliance ledger: one signed record per protocol step.

The relay calls :meth:`Recorder.step` with what crossed each boundary (sender, recipient,
message kind, size, SHA-256 — never payloads); nodes log the same facts in their own signed
egress logs, and ``fedcredit ledger verify --egress`` checks the two agree.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import fedcredit
from fedcredit.config import Scenario
from fedcredit.ledger import Ledger, generate_signing_key, public_key_hex, save_private_key, save_public_key

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


class Recorder:
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

    def run_start(self, parties: dict[str, dict]) -> None:
        s = self.scenario
        self.started = True
        self.ledger.append(
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

    def step(
        self,
        step: str,
        round: int,
        messages: list[dict],
        metrics: dict | None = None,
        participants: list[str] | None = None,
    ) -> None:
        senders = sorted({m["sender"] for m in messages} | set(participants or []))
        self.ledger.append(
            "step",
            {"step": step, "round": round, "messages": messages, "participants": senders, "metrics": metrics or {}},
        )

    def event(self, kind: str, payload: dict) -> None:
        if not self.started:  # failed before the parties were introduced: still a valid ledger
            self.run_start({})
        self.ledger.append(kind, payload)

    def close(self, status: str, summary: dict | None = None) -> None:
        if self.closed:
            return
        if not self.started:
            self.run_start({})
        self.ledger.append("run_end", {"status": status, **(summary or {})})
        self.ledger.close()
        self.closed = True
