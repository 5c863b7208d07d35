"""`mode = "scorecard"`: the simulation harness's side (the run itself is the vertical Flower run).

The scorecard runs as phases of the normal vertical run (:mod:`parties.vertical.scorecard_phases`:
hello, PSI, consent, split, ``binning``, ``scorecard_lr``, ``points``, ``scorecard_score``,
``scorecard_release``), every message relayed and in the ledger. Its exports are on the nodes:
``nodes/<bank>/points.{csv,json}`` (with the base points), ``nodes/<centre>/points.{csv,json}``,
``nodes/<bank>/iv_report.{csv,json}``, ``nodes/<bank>/bands.{csv,json}`` and
``nodes/<bank>/score_probability.{csv,json}``.

This module is what only a simulation can do, because it pools both parties' data:
:func:`add_scorecard_reference` adds to ``metrics.json`` the centralised references on the rows
the run used (an LR on the pooled WOE matrix with the run's own bins, and optbinning's
``BinningProcess`` + ``Scorecard`` with the same binning limits), and :func:`in_process_scorecard`
runs the same protocol chain party by party in one process (:func:`protocols.scorecard.local.train_scorecard`)
on the same rows in the same order, which the Flower run must reproduce exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
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
from protocols.scorecard.encoder import WoeEncoder
from protocols.scorecard.local import Scorecard, train_scorecard

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


def aligned_rows(scenario: Scenario, part: str, used: set[str] | None = None) -> tuple[PartyData, PartyData]:
    """Both parties' ``part`` rows the run used (``used``; default: every id both hold), sorted by
    USCC: the order the Flower run's alignment gives them (:class:`parties.vertical.alignment_phases.AlignPhase`)."""
    _, bank = _party_data(scenario, "bank", part)
    _, centre = _party_data(scenario, "credit_centre", part)
    known = set(centre.ids)
    common = sorted(u for u in bank.ids if u in known and (used is None or u in used))
    if not common:
        raise ValueError(f"no {part} rows in common between the bank and the credit centre")
    return bank.select(common), centre.select(common)


def in_process_scorecard(
    scenario: Scenario, used: set[str] | None = None
) -> tuple[Scorecard, tuple[PartyData, PartyData, PartyData, PartyData]]:
    """The same chain, party by party in one process, on the rows (and row order) of the Flower run:
    its reference. Returns the scorecard and (bank train, centre train, bank test, centre test)."""
    bcfg = scenario.settings(BinningConfig)
    # the held-out rows are the test split; no validation rows, so no early stopping on them
    lr = dataclasses.replace(scenario.settings(HeteroLRConfig), validation_fraction=0.0, early_stopping_patience=0)
    scfg = scenario.settings(ScorecardConfig)
    btr, ctr = aligned_rows(scenario, "train", used)
    bte, cte = aligned_rows(scenario, "test", used)
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
    return sc, (btr, ctr, bte, cte)


def centralised_reference(
    bank_enc: WoeEncoder,
    centre_enc: WoeEncoder,
    btr: PartyData,
    ctr: PartyData,
    bte: PartyData,
    cte: PartyData,
    cfg: BinningConfig,
) -> dict[str, Any]:
    """Pooled-data scorecards: the run's own bins with sklearn LR, and optbinning's (if installed)."""
    from sklearn.linear_model import LogisticRegression

    def woe(b: PartyData, c: PartyData) -> np.ndarray:
        return np.hstack(
            [
                bank_enc.transform(bank_enc.select(b.features, b.feature_names)),
                centre_enc.transform(centre_enc.select(c.features, c.feature_names)),
            ]
        )

    lr = LogisticRegression(max_iter=2000).fit(woe(btr, ctr), btr.require_labels())
    out: dict[str, Any] = {
        "same_bins_sklearn_lr": M.summary(bte.require_labels(), lr.predict_proba(woe(bte, cte))[:, 1])
    }
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


def _released(out: Path, party: str) -> dict:
    return json.loads((out / "nodes" / party / "model.json").read_text(encoding="utf-8"))


def add_scorecard_reference(scenario: Scenario, out: Path) -> dict[str, Any]:
    """Add to ``out/metrics.json`` of a finished scorecard run: the kept columns of both parties,
    the base points and the centralised references on the rows the run used (simulation only:
    it reads both parties' released model parts and pools their data). Returns the metrics."""
    out = Path(out)
    path = out / "metrics.json"
    metrics = json.loads(path.read_text())
    bank = scenario.parties_with_role("bank")[0].name
    centre = scenario.parties_with_role("credit_centre")[0].name
    bpart, cpart = _released(out, bank), _released(out, centre)
    bank_enc, centre_enc = WoeEncoder.from_dict(bpart["preprocessor"]), WoeEncoder.from_dict(cpart["preprocessor"])
    with np.load(out / "nodes" / bank / "test_scores.npz", allow_pickle=False) as z:
        used = set(z["aligned_ids"].tolist())
    btr, ctr = aligned_rows(scenario, "train", used)
    bte, cte = aligned_rows(scenario, "test", used)
    metrics.update(
        bank_columns_kept=bank_enc.names,
        centre_columns_kept=centre_enc.names,
        base_points=bpart["scorecard"]["base_points"],
        centralised=centralised_reference(bank_enc, centre_enc, btr, ctr, bte, cte, scenario.settings(BinningConfig)),
        centralised_rows=len(used),
    )
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    return metrics
