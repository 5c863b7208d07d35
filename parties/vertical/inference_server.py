"""Coordinator orchestration of joint inference: the bank scores applicants with the centre.

1. ``hello``     — nodes introduce themselves (:mod:`parties.common.introduction`; the ledger's run_start).
2. ``inference`` — once per batch of applicants (``[inference] batch_size``, default 50 000):
   the centre sends an ephemeral key, the bank a sealed request holding only consented USCCs,
   the centre sealed partial answers; the bank scores and writes ``scores.csv`` on its node.

After every batch the ledger gets an ``inference`` record: counts (requested, refused by consent
reason, sent, found, unknown at the centre, scored) and the SHA-256 of each model part used — no
ids, no scores. When the training run's ledger is at hand (``[inference] training_ledger``, or
``model_dir``/ledger.sqlite), the coordinator checks it verifies and that both parts are the
ones its ``model_release`` record names, so parts of different training runs cannot be mixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from flwr.serverapp import Grid

from fedcredit.config import Scenario
from fedcredit.config.sections import InferenceSettings
from parties.common.introduction import introduce
from parties.common.recorder import LedgerRecorder, Recorder
from parties.common.relay import RunFailed
from parties.common.transport import NodeReply
from parties.vertical.server import bank_and_centre, require_consent_material

log = logging.getLogger(__name__)
PHASE = "inference"


def _training_release(scenario: Scenario) -> tuple[str, dict, str] | None:
    """(training run id, {party: sha256}, ledger path) from the training ledger, if available."""
    from fedcredit.ledger import load_public_key, read_records, verify

    section = scenario.settings(InferenceSettings)
    if section.training_ledger is not None:
        path = Path(scenario.resolve(section.training_ledger))
        if not path.is_file():
            raise RunFailed("coordinator", "setup", f"[inference] training_ledger {path} does not exist")
    elif section.model_dir is not None:
        path = Path(scenario.resolve(section.model_dir)) / "ledger.sqlite"
        if not path.is_file():
            return None
    else:
        return None
    pub = path.parent / "coordinator_pub.pem"
    report = verify(path, public_key=load_public_key(pub) if pub.is_file() else None)
    if not report.intact:
        raise RunFailed("coordinator", "setup", f"training ledger {path} does not verify: {report.errors[:2]}")
    records = read_records(path)
    release = [r for r in records if r.kind == "model_release"]
    if not release:
        raise RunFailed(
            "coordinator",
            "setup",
            f"training ledger {path} has no model_release record (the training run did not finish)",
        )
    shas = {party: str(v["sha256"]) for party, v in release[-1].payload.items()}
    return release[-1].run_id, shas, str(path)


def run_inference(
    grid: Grid, scenario: Scenario, recorder: LedgerRecorder, out_dir: Path, *, timeout: float = 900.0
) -> dict:
    """Score the scenario's applicants in batches; returns (and the caller writes) ``metrics.json``."""
    t0 = time.monotonic()
    batch_size = scenario.settings(InferenceSettings).batch_size  # checked >= 1 at load
    require_consent_material(scenario)
    relay, _ = introduce(grid, recorder, scenario, timeout)
    bank, centre = bank_and_centre(scenario, "inference")
    training = _training_release(scenario)
    if training is not None:
        relay.on_step = _release_guard(training, recorder)
    totals: dict = {"requested": 0, "sent": 0, "found": 0, "unknown_at_centre": 0, "scored": 0}
    refused: dict[str, int] = {}
    by_centre: dict[str, int] = {}
    models: dict = {}
    batch, more = 0, True
    while more:
        t_batch = time.monotonic()
        params = {"batch": batch, "batch_size": batch_size}
        done = relay.run_phase(PHASE, {bank: {"peer": centre, **params}, centre: {"peer": bank, **params}})
        b, c = done[bank], done[centre]
        models = {bank: b["model"], centre: c["model"]}
        if c["queried"] != b["sent"] or c["found"] != b["found"]:
            raise RunFailed(
                centre,
                f"{PHASE}/finish",
                f"centre reports {c['queried']} queried / {c['found']} "
                f"found, bank sent {b['sent']} and got {b['found']} found",
            )
        record = {
            "batch": batch,
            "bank": bank,
            "credit_centre": centre,
            "purpose": scenario.purpose,
            "consent": b["consent"],
            **{k: b[k] for k in ("requested", "refused", "sent", "found", "unknown_at_centre", "scored")},
            "refused_by_centre": c.get("consent_refused", {}),  # the centre's own re-check: counts by reason
            "model_type": b["model"]["type"],
            "models": {p: m["sha256"] for p, m in models.items()},
            "training_run_id": training[0] if training else None,
            "seconds": round(time.monotonic() - t_batch, 3),
        }
        recorder.event("inference", record)
        for k in totals:
            totals[k] += int(b[k])
        for reason, n in b["refused"].items():
            refused[reason] = refused.get(reason, 0) + int(n)
        for reason, n in c.get("consent_refused", {}).items():
            by_centre[reason] = by_centre.get(reason, 0) + int(n)
        log.info(
            "inference batch %d: %d applicants, %d refused by consent, %d scored, %d unknown at the centre",
            batch,
            b["requested"],
            sum(b["refused"].values()),
            b["scored"],
            b["unknown_at_centre"],
        )
        more = bool(b["more"])
        batch += 1
    return {
        "mode": "inference",
        "purpose": scenario.purpose,
        "batches": batch,
        "batch_size": batch_size,
        "applicants": totals["requested"],
        "refused": dict(sorted(refused.items())),
        "refused_by_centre": dict(sorted(by_centre.items())),
        **{k: v for k, v in totals.items() if k != "requested"},
        "model_type": models[bank]["type"],
        "models": {p: m["sha256"] for p, m in models.items()},
        "training_run_id": training[0] if training else None,
        "training_ledger": training[2] if training else None,
        "scores_path": done[bank]["scores_path"],
        "flower_round_trips": relay.steps,
        "seconds": round(time.monotonic() - t0, 2),
    }


def _release_guard(training: tuple[str, dict, str], recorder: Recorder) -> Callable[[str, dict[str, NodeReply]], None]:
    """Relay hook: right after init (before the bank sends any USCC) both parties have reported
    the hash of the model part they loaded; stop unless it is what the training run released."""
    run_id, released, path = training

    def check(step: str, replies: dict[str, NodeReply]) -> None:
        if step != f"{PHASE}/init":
            return
        for party, rep in replies.items():
            sha = rep.summary.get("model", {}).get("sha256")
            if party not in released:
                reason = f"training run {run_id} ({path}) released no model part for {party!r}"
            elif sha != released[party]:
                reason = (
                    f"model part (sha256 {str(sha)[:16]}…) is not the one training run {run_id} released "
                    f"({released[party][:16]}…): parts of different runs cannot score together"
                )
            else:
                continue
            recorder.event("failure", {"party": party, "step": step, "reason": reason})
            raise RunFailed(party, step, reason)

    return check
