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

The coordinator never holds a decryption key, and what it relays is opaque ciphertext or blinded
points; its ledger records sizes and hashes of everything that crossed a boundary.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from flwr.serverapp import Grid

from fedcredit.config import Scenario
from fedcredit.config.sections import ConsentSettings
from parties.common.introduction import introduce
from parties.common.recorder import LedgerRecorder
from parties.common.relay import RunFailed

log = logging.getLogger(__name__)

TRAIN_PHASE = {"vertical-lr": "hetero_lr", "secureboost": "secureboost"}


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
    grid: Grid, scenario: Scenario, recorder: LedgerRecorder, out_dir: Path, *, timeout: float = 900.0
) -> dict:
    """Run a vertical training scenario end to end; returns (and the caller writes) ``metrics.json``."""
    t0 = time.monotonic()
    require_consent_material(scenario)
    relay, _ = introduce(grid, recorder, scenario, timeout)
    bank, centre = bank_and_centre(scenario, "vertical mode")
    pair = {bank: {"peer": centre}, centre: {"peer": bank}}
    t_phase = time.monotonic()

    align = relay.run_phase("align", pair)
    n_common = int(align[bank]["intersection"])
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
    consent = record_consent(relay.run_phase("consent", pair), recorder, scenario, bank, centre, align[bank])
    n_common = int(consent["accepted"])

    split = relay.run_phase("split", pair)
    train_phase = TRAIN_PHASE[scenario.mode]
    t_train = time.monotonic()
    trained = relay.run_phase(train_phase, pair)
    train_seconds = time.monotonic() - t_train
    scored = relay.run_phase("score", pair)
    released = relay.run_phase("release", pair)
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
        "psi": align[bank],
        "feature_importance": {
            p: s.get("feature_importance") for p, s in trained.items() if s.get("feature_importance") is not None
        },
    }
    (out_dir / "models.json").write_text(
        json.dumps({p: {"sha256": s["model_sha256"], "path": s["model_path"]} for p, s in released.items()}, indent=2)
    )
    return metrics
