"""Coordinator orchestration of a vertical (hetero) run: the centre's platform runs this.

Phases, each a protocol relayed by :class:`parties.common.relay.Relay` (node-side adapters:
:mod:`parties.vertical.registry`):

1. ``hello``  — nodes introduce themselves (:mod:`parties.common.introduction`).
2. ``align``  — consent-filtered ECDH-PSI; both sides keep the intersection in a common order.
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


def run_vertical(
    grid: Grid, scenario: Scenario, recorder: LedgerRecorder, out_dir: Path, *, timeout: float = 900.0
) -> dict:
    """Run a vertical training scenario end to end; returns (and the caller writes) ``metrics.json``."""
    t0 = time.monotonic()
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
    consent = align[bank].get("consent")
    if consent is not None:
        recorder.event("consent_check", {"bank": bank, "purpose": scenario.purpose, **consent})
    if n_common == 0:
        raise RunFailed(bank, "align", "the intersection with the credit centre is empty: nothing to train on")
    if int(align[centre]["intersection"]) != n_common:
        raise RunFailed(centre, "align", "parties disagree on the intersection size")

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
