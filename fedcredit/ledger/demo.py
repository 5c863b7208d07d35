"""A small, realistic run ledger with egress logs, written through the real writers.

Why: auditors and tests need a known-good ledger to practise on (``fedcredit ledger demo``), and
the tamper tests mutate copies of it. The messages are random bytes standing in for the
ciphertexts a real run exchanges; their hashes and sizes are logged exactly as a run logs them.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcredit.ledger.keys import generate_signing_key, public_key_hex
from fedcredit.ledger.records import config_hash, message_entry, sha256_hex
from fedcredit.ledger.writer import EgressLog, Ledger


@dataclass
class DemoRun:
    ledger_path: Path
    egress_paths: dict[str, Path]
    coordinator_key: Ed25519PrivateKey
    node_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    run_id: str = ""


def copy_run(run: DemoRun, directory: str | Path) -> DemoRun:
    """Copy a finished demo run's files (ledger and egress logs) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def _copy(src: Path) -> Path:
        dst = d / src.name
        # A stale -wal next to a replaced database would be replayed onto it: remove it first.
        for side in (Path(f"{dst}-wal"), Path(f"{dst}-shm")):
            side.unlink(missing_ok=True)
        shutil.copyfile(src, dst)
        return dst

    _copy(run.ledger_path)
    paths = {node: _copy(p) for node, p in run.egress_paths.items()}
    return DemoRun(d / run.ledger_path.name, paths, run.coordinator_key, dict(run.node_keys), run.run_id)


def write_demo_run(
    directory: str | Path,
    *,
    run_id: str = "demo-run",
    steps: int = 3,
    seed: int = 0,
    coordinator_key: Ed25519PrivateKey | None = None,
    node_keys: dict[str, Ed25519PrivateKey] | None = None,
    finish: bool = True,
) -> DemoRun:
    """Write ``ledger.db`` plus ``egress-<node>.db`` for a bank and a credit centre into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ckey = coordinator_key or generate_signing_key()
    keys = node_keys or {"bank": generate_signing_key(), "centre": generate_signing_key()}
    roles = {"bank": "bank", "centre": "credit_centre"}
    run = DemoRun(d / "ledger.db", {n: d / f"egress-{n}.db" for n in keys}, ckey, dict(keys), run_id)
    config = {"mode": "vertical", "protocol": "hetero_lr", "rounds": steps, "seed": seed}
    with Ledger.create(run.ledger_path, ckey, run_id=run_id) as ledger:
        ledger.append(
            "run_start",
            {
                "config_hash": config_hash(config),
                "code_version": "demo",
                "mode": "vertical",
                "purpose": "credit_risk_modelling",
                "parties": {
                    n: {"role": roles.get(n, "bank"), "egress_pubkey": public_key_hex(k)} for n, k in keys.items()
                },
            },
        )
        ledger.append(
            "consent_check",
            {
                "bank": "bank",
                "purpose": "credit_risk_modelling",
                "checked": 120,
                "allowed": 113,
                "refused": {"expired": 4, "revoked": 3},
            },
        )
        ledger.append("psi", {"bank_set_size": 113, "centre_set_size": 500, "intersection_size": 97})
        for step in range(steps):
            messages = []
            for node, key in keys.items():
                payload = rng.randbytes(rng.randint(16, 256))
                with EgressLog.create(run.egress_paths[node], key, run_id=run_id, node=node) as egress:
                    egress.record_sent(
                        kind="encrypted_gradient", recipient="coordinator", step=f"round-{step}", payload=payload
                    )
                messages.append(
                    message_entry(sender=node, recipient="coordinator", kind="encrypted_gradient", payload=payload)
                )
            ledger.append(
                "step",
                {
                    "step": f"round-{step}",
                    "round": step,
                    "messages": messages,
                    "participants": sorted(keys),
                    "metrics": {"loss": round(0.69 - 0.01 * step, 4)},
                },
            )
        if finish:
            ledger.append("model_release", {"parts": {n: sha256_hex(rng.randbytes(64)) for n in keys}})
            ledger.append("run_end", {"status": "completed"})
    return run
