"""`mode = "scorecard"`: binning -> WOE -> two-party LR -> points, with every export a model risk team asks for.

What runs: the real protocols (:mod:`protocols.binning`, :mod:`protocols.hetero_lr`) party by
party through their wire encoding in one process (:func:`protocols.scorecard.local.train_scorecard`).
Two simulation shortcuts, stated in ``docs/scorecard.md``: rows are aligned by joining ids in
this process (a Flower run aligns them with consent-filtered ECDH-PSI), and there is no ledger.
The Flower phases for binning and points are not wired yet.

Exports in ``--out``: ``bank/points.{csv,json}`` and ``credit_centre/points.{csv,json}`` (each
party's own table), ``bank/iv_report.{csv,json}`` (every column of both parties),
``bands.{csv,json}`` (test-set score bands with counts, bad rate and KS),
``score_probability.{csv,json}``, ``metrics.json`` (test AUC/KS/Gini of the federated card and
the centralised references on the pooled data) and ``status.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedcredit import metrics as M
from fedcredit.config import Scenario
from fedcredit.data.loaders import PartyData, load_party_data
from fedcredit.data.readers import ReadOptions
from protocols.binning.config import BinningConfig
from protocols.hetero_lr.config import HeteroLRConfig
from protocols.scorecard.config import ScorecardConfig
from protocols.scorecard.local import Scorecard, train_scorecard
from protocols.scorecard.points import probability_table, score_bands

log = logging.getLogger(__name__)


def _party_data(scenario: Scenario, role: str, part: str) -> tuple[str, PartyData]:
    specs = scenario.parties_with_role(role)
    if len(specs) != 1:
        raise ValueError(f"scorecard mode needs exactly one {role} (scenario has {len(specs)})")
    spec = specs[0]
    opts = ReadOptions.from_mapping(spec.options, where=f"[parties.{spec.name}]")
    data = load_party_data(
        scenario.resolve(spec.data), role, party=spec.name, part=part, seed=scenario.seed, scaled=False, opts=opts
    )
    return spec.name, data


def _aligned(scenario: Scenario, part: str) -> tuple[PartyData, PartyData]:
    _, bank = _party_data(scenario, "bank", part)
    _, centre = _party_data(scenario, "credit_centre", part)
    known = set(centre.ids)
    common = [u for u in bank.ids if u in known]  # simulation shortcut: the Flower run uses ECDH-PSI
    if not common:
        raise ValueError(f"no {part} rows in common between the bank and the credit centre")
    return bank.select(common), centre.select(common)


def _write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2, ensure_ascii=False, default=float), "utf-8")
    pd.DataFrame(rows).to_csv(path.with_suffix(".csv"), index=False, encoding="utf-8")


def centralised_reference(
    sc: Scorecard, btr: PartyData, ctr: PartyData, bte: PartyData, cte: PartyData, cfg: BinningConfig
) -> dict[str, Any]:
    """Pooled-data scorecards: the same bins with sklearn LR, and optbinning's own (if installed)."""
    from sklearn.linear_model import LogisticRegression

    Wtr = np.hstack([sc.bank.transform_own(), sc.centre.transform()])
    Wte = np.hstack([sc.bank.transform_own(X=bte.features), sc.centre.transform(X=cte.features)])
    lr = LogisticRegression(max_iter=2000).fit(Wtr, btr.require_labels())
    out: dict[str, Any] = {"same_bins_sklearn_lr": M.summary(bte.require_labels(), lr.predict_proba(Wte)[:, 1])}
    try:
        from optbinning import BinningProcess
        from optbinning import Scorecard as OptScorecard
    except ImportError:  # pragma: no cover - optbinning is a dependency; keep the run going without it
        out["optbinning"] = "not installed"
        return out
    names = [f"bank:{c}" for c in btr.feature_names] + [f"centre:{c}" for c in ctr.feature_names]
    cats = [f"bank:{c}" for c in btr.categorical] + [f"centre:{c}" for c in ctr.categorical]
    Xtr = pd.DataFrame(np.hstack([btr.features, ctr.features]), columns=names)
    Xte = pd.DataFrame(np.hstack([bte.features, cte.features]), columns=names)
    for c in cats:
        Xtr[c] = Xtr[c].astype("Int64").astype(str)
        Xte[c] = Xte[c].astype("Int64").astype(str)
    bp = BinningProcess(
        variable_names=names,
        categorical_variables=cats,
        min_prebin_size=max(cfg.min_bin_rows / len(Xtr), 1e-3),
        selection_criteria={"iv": {"min": cfg.min_iv}},
        binning_fit_params={
            n: {"max_n_bins": cfg.max_bins, "min_bin_size": cfg.min_bin_share or None, "max_n_prebins": cfg.n_fine_bins}
            for n in names
        },
    )
    card = OptScorecard(binning_process=bp, estimator=LogisticRegression(max_iter=2000), scaling_method=None)
    card.fit(Xtr, btr.require_labels())
    out["optbinning_scorecard"] = M.summary(bte.require_labels(), card.predict_proba(Xte)[:, 1])
    return out


def run_scorecard_scenario(scenario: Scenario, out: Path) -> dict[str, Any]:
    """Train, score the test rows, export; returns the status dict (also ``out/status.json``)."""
    from fedcredit.config.sections import ConsentSettings

    if scenario.settings(ConsentSettings).mode != "demo":
        # Fail closed: this one-process mode joins rows by id and checks no consent token, so it
        # may only run on bundled/synthetic data that the scenario marks as such.
        raise ValueError(
            f'scenario {scenario.name!r}: mode = "scorecard" runs in one process without consent '
            'checks (docs/scorecard.md); it needs [consent] mode = "demo" (bundled or synthetic data only)'
        )
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bcfg = scenario.settings(BinningConfig)
    # the held-out rows are the test split; no validation rows, so no early stopping on them
    lr = dataclasses.replace(scenario.settings(HeteroLRConfig), validation_fraction=0.0, early_stopping_patience=0)
    scfg = scenario.settings(ScorecardConfig)
    btr, ctr = _aligned(scenario, "train")
    bte, cte = _aligned(scenario, "test")
    t_train = time.time()
    sc = train_scorecard(
        btr.features,
        btr.feature_names,
        btr.require_labels(),
        ctr.features,
        ctr.feature_names,
        binning=bcfg,
        lr=lr,
        scale=scfg.scale,
        bank_categorical=btr.categorical,
        centre_categorical=ctr.categorical,
    )
    train_seconds = time.time() - t_train
    y = bte.require_labels()
    score = sc.score(bte.features, cte.features)
    p = sc.scale.probability(score)
    _write(
        sc.bank_points.rows + [{"party": "bank", "column": "(base)", "points": sc.base_points}], out / "bank" / "points"
    )
    _write(sc.centre_points.rows, out / "credit_centre" / "points")
    _write(sc.bank.iv_report(), out / "bank" / "iv_report")
    _write(score_bands(score, y, scfg.bands), out / "bands")
    _write(probability_table(sc.scale), out / "score_probability")
    result = {
        "mode": "scorecard",
        **M.summary(y, p),
        "rows_train": len(btr),
        "rows_test": len(bte),
        "bank_columns_kept": sc.bank.kept_own,
        "centre_columns_kept": sc.centre.kept,
        "base_points": sc.base_points,
        "train_seconds": round(train_seconds, 2),
        "centralised": centralised_reference(sc, btr, ctr, bte, cte, bcfg),
        "simulation": "in-process protocols; rows aligned by an id join, not PSI; no ledger",
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=float))
    status = {
        "status": "completed",
        "scenario": scenario.name,
        "mode": "scorecard",
        "wall_seconds": round(time.time() - t0, 2),
    }
    (out / "status.json").write_text(json.dumps(status, indent=2))
    return status
