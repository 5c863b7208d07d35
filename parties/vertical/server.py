"""Coordinator orchestration of a vertical (hetero) run: the centre's platform runs this.

Phases, each a protocol relayed by :class:`parties.common.relay.Relay` (node-side adapters:
:mod:`parties.vertical.registry`):

1. ``hello``  — nodes introduce themselves (:mod:`parties.common.introduction`).
2. ``align``  — ECDH-PSI on the ids the bank holds consent tokens for; both sides keep the
                intersection in a common order.
   ``consent``— the bank sends the intersection's tokens sealed to the centre, which verifies them
                (docs/consent.md); both drop refused rows. Counts by reason go to the ledger.
3. ``split``  — the bank (which owns the labels) tells the centre which aligned rows are test and
                validation rows; each party fits its local preprocessing on its training rows.
4. ``train``  — two-party Paillier logistic regression or SecureBoost.
5. ``score``  — joint scoring of the held-out rows; the bank computes AUC/KS/Gini.
6. ``release``— each party saves its own model part and reports its SHA-256.

``mode = "scorecard"`` (:mod:`parties.vertical.scorecard_phases`): after the split, ``binning``
(federated WOE/IV), training is ``scorecard_lr`` (hetero-LR on WOE), then ``points`` (each party
keeps its own points table), ``scorecard_score`` and ``scorecard_release``.

The coordinator never holds a decryption key, and what it relays is opaque ciphertext or blinded
points; its ledger records sizes and hashes of everything that crossed a boundary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from flwr.serverapp import Grid

from fedcredit.config import Scenario
from fedcredit.config.sections import ConsentSettings
from parties.common.checkpoint import REPORTED, CoordinatorCheckpoint
from parties.common.exchange import ExchangeHub
from parties.common.introduction import introduce
from parties.common.recorder import LedgerRecorder
from parties.common.relay import RunFailed

log = logging.getLogger(__name__)

TRAIN_PHASE = {"vertical-lr": "hetero_lr", "secureboost": "secureboost", "scorecard": "scorecard_lr"}
# mode = "scorecard": binning before training, points after it, and its own scoring and release
# (parties.vertical.scorecard_phases)
SCORE_PHASE = {"scorecard": "scorecard_score"}
# training phases whose steps stream through the coordinator's hub (parties.common.exchange): the
# hetero-LR ones, whose exchanges are lockstep. SecureBoost's parties mostly take turns (one has mail
# at a time), so a stream would stop after one exchange: it stays one relay step per exchange
STREAMED_PHASES = frozenset({"hetero_lr", "scorecard_lr"})
RELEASE_PHASE = {"scorecard": "scorecard_release"}


def bank_and_centre(scenario: Scenario, what: str) -> tuple[str, str]:
    """The names of the scenario's one bank and one credit centre (``what`` needs exactly those)."""
    banks = scenario.parties_with_role("bank")
    centres = scenario.parties_with_role("credit_centre")
    if len(banks) != 1 or len(centres) != 1:
        raise RunFailed(
            "coordinator",
            "setup",
            f"{what} needs exactly one bank and one credit centre (scenario has {len(banks)} and {len(centres)})",
        )
    return banks[0].name, centres[0].name


def require_consent_material(scenario: Scenario) -> None:
    """Fail closed: refuse to start a run that would use the centre's data without consent tokens."""
    why = scenario.settings(ConsentSettings).missing_material()
    if why is not None:
        raise RunFailed("coordinator", "setup", why)


def record_consent(
    consent: dict, recorder: LedgerRecorder, scenario: Scenario, bank: str, centre: str, psi_bank: dict
) -> dict:
    """The centre's consent verdict to the ledger (counts only); returns its counts."""
    b, c = consent[bank], consent[centre]
    if b["checked"] != c["checked"] or b["accepted"] != c["accepted"]:
        raise RunFailed(bank, "consent", f"bank keeps {b['accepted']} rows, the centre {c['accepted']}")
    recorder.event(
        "consent_check",
        {
            "bank": bank,
            "centre": centre,
            "purpose": scenario.purpose,
            "mode": c["mode"],
            "bank_side": psi_bank.get("consent"),
            **c["check"],
        },
    )
    if c["accepted"] == 0:
        raise RunFailed(centre, "consent", f"no consent token of the {c['checked']} intersected firms was accepted")
    return {"mode": c["mode"], "checked": c["checked"], "accepted": c["accepted"], "refused": c["check"]["refused"]}


def run_vertical(
    grid: Grid,
    scenario: Scenario,
    recorder: LedgerRecorder,
    out_dir: Path,
    *,
    timeout: float = 900.0,
    resume: CoordinatorCheckpoint | None = None,
    exchange: ExchangeHub | None = None,
) -> dict:
    """Run a vertical training scenario end to end; returns (and the caller writes) ``metrics.json``.

    At every phase end and every epoch (tree) boundary both parties reach, the run's position goes
    to ``checkpoint.json`` (:class:`CoordinatorCheckpoint`). With ``resume`` (that checkpoint, read
    back after the coordinator was lost) completed phases are skipped, the nodes restore their own
    checkpoint at ``resume.label`` and training continues from the recorded boundary.
    """
    t0 = time.monotonic()
    require_consent_material(scenario)
    segment = 0 if resume is None else resume.segment
    resumed_from = None if resume is None else {"segment": segment, "from": resume.label, "epochs": resume.epochs}
    relay, intro = introduce(
        grid, recorder, scenario, timeout, resume=None if resume is None else (segment, resume.label)
    )
    bank, centre = bank_and_centre(scenario, "vertical mode")
    if resume is not None:
        check_same_parties(recorder, intro, resume.label)
    pair = {bank: {"peer": centre}, centre: {"peer": bank}}
    train_phase = TRAIN_PHASE[scenario.mode]
    ck = resume or CoordinatorCheckpoint(run_id=recorder.run_id, scenario_hash=scenario.config_hash, label="start")
    ck.segment = segment
    relay.on_step = _checkpointer(ck, out_dir, train_phase)
    if exchange is not None:  # training streams each epoch's (tree's) exchanges in one step
        relay.exchange, relay.streamed = exchange, STREAMED_PHASES

    def phase(name: str, params: dict[str, dict] = pair) -> dict:
        """Run phase ``name``, or hand back its result when a resumed run already completed it."""
        if name in ck.phases:
            return ck.phases[name]
        if name == ck.training:  # resumed mid-training: continue from the recorded boundary
            log.info("resuming %s after %d completed epochs/trees (checkpoint %s)", name, ck.epochs, ck.label)
            params = {p: {**v, "resume": True} for p, v in params.items()}
        result = relay.run_phase(name, params)
        ck.phases[name], ck.training, ck.epochs, ck.label = result, None, 0, f"after:{name}"
        ck.save(out_dir)
        return result

    t_phase = time.monotonic()
    resumed_align = "align" in ck.phases
    align = phase("align")
    n_common = int(align[bank]["intersection"])
    if not resumed_align:
        recorder.event(
            "psi",
            {
                "bank": {k: v for k, v in align[bank].items() if k != "metrics"},
                "credit_centre": {k: v for k, v in align[centre].items() if k != "metrics"},
                "seconds": round(time.monotonic() - t_phase, 3),
            },
        )
    if n_common == 0:
        raise RunFailed(bank, "align", "the intersection with the credit centre is empty: nothing to train on")
    if int(align[centre]["intersection"]) != n_common:
        raise RunFailed(centre, "align", "parties disagree on the intersection size")
    resumed_consent = "consent" in ck.phases
    consent_replies = phase("consent")
    if resumed_consent:
        consent = _consent_counts(consent_replies, centre)
    else:
        consent = record_consent(consent_replies, recorder, scenario, bank, centre, align[bank])
    n_common = int(consent["accepted"])

    split = phase("split")
    scorecard = scenario.mode == "scorecard"
    t_train = time.monotonic()
    binned = run_binning(phase, recorder, bank, centre) if scorecard else None
    trained = phase(train_phase)
    train_seconds = time.monotonic() - t_train
    points = run_points(phase, recorder) if scorecard else None
    scored = phase(SCORE_PHASE.get(scenario.mode, "score"))
    released = relay.run_phase(RELEASE_PHASE.get(scenario.mode, "release"), pair)
    recorder.event(
        "model_release", {p: {"sha256": s["model_sha256"], "path": s["model_path"]} for p, s in released.items()}
    )
    metrics = {
        **scored[bank]["metrics"],
        "rows_intersection": n_common,
        "rows_psi": int(align[bank]["intersection"]),
        "consent": consent,
        "rows_train": split[bank]["train"],
        "rows_test": split[bank]["test"],
        "rows_validation": split[bank]["validation"],
        "epochs": trained[bank].get("epochs"),
        "trees": trained[bank].get("trees"),
        "history": trained[bank].get("history", []),
        "train_seconds": round(train_seconds, 2),
        "seconds": round(time.monotonic() - t0, 2),
        "flower_round_trips": relay.steps,
        "streamed_steps": relay.streamed_steps,
        "streamed_exchanges": relay.exchanges,
        "resumed": resumed_from,
        "psi": align[bank],
        "feature_importance": {
            p: s.get("feature_importance") for p, s in trained.items() if s.get("feature_importance") is not None
        },
    }
    if scorecard:
        metrics.update(mode="scorecard", binning=binned, points=points)
    (out_dir / "models.json").write_text(
        json.dumps({p: {"sha256": s["model_sha256"], "path": s["model_path"]} for p, s in released.items()}, indent=2)
    )
    return metrics


def run_binning(phase: Callable[[str], dict], recorder: LedgerRecorder, bank: str, centre: str) -> dict:
    """Federated WOE/IV binning; both sides must agree on the centre's column counts (ledger: counts)."""
    t0 = time.monotonic()
    done = phase("binning")
    b, c = done[bank], done[centre]
    if b["centre_columns"] != c["columns"] or b["centre_kept"] != c["kept"]:
        raise RunFailed(
            centre,
            "binning",
            f"the centre reports {c['kept']} of {c['columns']} columns kept, the bank "
            f"{b['centre_kept']} of {b['centre_columns']}",
        )
    record = {"bank": b, "credit_centre": c, "seconds": round(time.monotonic() - t0, 3)}
    recorder.event("binning", record)
    return record


def run_points(phase: Callable[[str], dict], recorder: LedgerRecorder) -> dict:
    """Each party's points table, kept on its node; the ledger gets each table's SHA-256."""
    done = phase("points")
    record = {p: {"columns": s["columns"], "sha256": s["points_sha256"]} for p, s in done.items()}
    recorder.event("points_tables", record)
    return record


def _consent_counts(consent: dict, centre: str) -> dict:
    """The consent numbers of a phase a resumed run completed before (already in the ledger)."""
    c = consent[centre]
    return {"mode": c["mode"], "checked": c["checked"], "accepted": c["accepted"], "refused": c["check"]["refused"]}


def check_same_parties(recorder: LedgerRecorder, intro: dict, label: str) -> None:
    """A resumed segment must be run by the nodes that started the run (same roles, same egress
    keys), each restored to checkpoint ``label``."""
    for name, first in recorder.original_parties.items():
        now = intro.get(name)
        if now is None:
            raise RunFailed(name, "hello", "did not answer the resumed run")
        for key in ("role", "egress_pubkey"):
            if now.get(key) != first.get(key):
                raise RunFailed(
                    name, "hello", f"answers the resumed run with another {key} than it started the run with"
                )
        if now.get("restored") != label:
            raise RunFailed(name, "hello", f"restored checkpoint {now.get('restored')!r}, not {label!r}")


def _checkpointer(ck: CoordinatorCheckpoint, out_dir: Path, train_phase: str) -> Callable[[str, dict], None]:
    """The relay's ``on_step``: when every party's latest reported checkpoint label is the same new
    one (a phase end or an epoch/tree boundary), record it in ``checkpoint.json``, atomically.

    Labels are remembered per party across steps: hetero-LR parties reach an epoch boundary in
    the same step, SecureBoost parties reach a tree boundary one step apart (the relay calls only
    the party with mail; :mod:`protocols.secureboost.checkpoint`). A party's step without a
    label clears its entry, so only a party that wrote the label in its latest step counts
    (the node keeps that file even after it moves on)."""
    latest: dict[str, object] = {}

    def on_step(step: str, replies: dict) -> None:
        for party, r in replies.items():
            latest[party] = r.summary.get(REPORTED)
        labels = set(latest.values())
        if len(latest) < 2 or len(labels) != 1:
            return
        (label,) = labels
        if not isinstance(label, str) or label == ck.label:
            return
        if label.startswith(f"{train_phase}@"):
            ck.label, ck.training, ck.epochs = label, train_phase, int(label.split("@", 1)[1])
            ck.save(out_dir)
        # a phase end ("after:<phase>") is saved by run_vertical together with the phase's result

    return on_step
