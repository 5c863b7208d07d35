"""Centralised (pooled, non-private) baselines: the yardstick every federated run is compared to.

Two model families -- logistic regression and histogram gradient boosting with SecureBoost-like
settings (30 trees, depth 3, 32 bins, learning rate 0.3) -- are each trained on (a) the bank's
features only and (b) bank + credit-centre features joined by USCC, on the same train/test
split. The gap between (a) and (b) is what joint modelling is worth; a federated protocol is
lossless when it reaches (b).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit import metrics
from fedcredit.data.loaders import hash_split_mask, load_party_table
from fedcredit.data.party_data import PartyData
from fedcredit.data.schema import DataError

log = logging.getLogger(__name__)

MODELS = ("lr_bank_only", "lr_joint", "gbdt_bank_only", "gbdt_joint")
GBDT_PARAMS = dict(max_iter=30, max_depth=3, max_bins=32, learning_rate=0.3, early_stopping=False)


@dataclass
class Pooled:
    """Train/test matrices for the two feature sets (rows aligned by USCC)."""

    x_bank: tuple[np.ndarray, np.ndarray]
    x_joint: tuple[np.ndarray, np.ndarray]
    y: tuple[np.ndarray, np.ndarray]
    note: str


def _join(bank: PartyData, centre: PartyData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bank X, joint X, y, matched mask) for bank rows whose USCC the centre knows."""
    pos = {u: i for i, u in enumerate(centre.ids)}
    idx = np.fromiter((pos.get(u, -1) for u in bank.ids), dtype=np.int64, count=len(bank))
    matched = idx >= 0
    xb = bank.features[matched]
    xj = np.hstack([xb, centre.features[idx[matched]]])
    return xb, xj, bank.require_labels()[matched], matched


def _default_credit() -> Pooled:
    from fedcredit.data.default_credit import load_vertical

    parts = {}
    for part in ("train", "test"):
        bank, centre = load_vertical(part)
        xb, xj, y, _ = _join(bank, centre)
        parts[part] = (xb, xj, y)
    tr, te = parts["train"], parts["test"]
    return Pooled(
        (tr[0], te[0]),
        (tr[1], te[1]),
        (tr[2], te[2]),
        f"default_credit: {len(tr[2])} train / {len(te[2])} test rows (stratified 70/30, seed 42)",
    )


def _synthetic(directory: Path, seed: int) -> Pooled:
    """Pool every bank_*.csv|parquet in ``directory``, joined with credit_centre by USCC.

    Only rows the centre knows are used (both models see the same rows); the split is the
    keyed USCC hash, so a firm held by several banks falls on one side only.
    """
    banks = sorted(p for p in directory.iterdir() if p.name.startswith("bank_") and p.suffix in (".csv", ".parquet"))
    centres = [p for p in directory.iterdir() if p.stem == "credit_centre" and p.suffix in (".csv", ".parquet")]
    if not banks or not centres:
        raise DataError("expected credit_centre.(csv|parquet) and bank_*.(csv|parquet)", file=str(directory))
    centre = load_party_table(centres[0], "credit_centre")
    xbs, xjs, ys, ids = [], [], [], []
    unmatched = 0
    names = None
    for p in banks:
        bank = load_party_table(p, "bank")
        if names is not None and bank.feature_names != names:
            raise DataError(f"bank feature columns differ from the other banks': {bank.feature_names}", file=str(p))
        names = bank.feature_names
        xb, xj, y, matched = _join(bank, centre)
        unmatched += int((~matched).sum())
        xbs.append(xb)
        xjs.append(xj)
        ys.append(y)
        ids.extend(np.asarray(bank.ids, dtype=object)[matched].tolist())
    xb, xj, y = np.vstack(xbs), np.vstack(xjs), np.concatenate(ys)
    test = hash_split_mask(ids, seed)
    note = (
        f"{directory}: {len(banks)} bank(s) pooled, {len(y)} rows known to the centre "
        f"({unmatched} bank rows unknown to the centre left out), {int((~test).sum())} train / {int(test.sum())} test"
    )
    return Pooled((xb[~test], xb[test]), (xj[~test], xj[test]), (y[~test], y[test]), note)


def _fit_score(kind: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, seed: int) -> np.ndarray:
    if kind == "lr":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(random_state=seed, **GBDT_PARAMS)
    model.fit(xtr, ytr)
    return model.predict_proba(xte)[:, 1]


def _pooled(dataset: str, seed: int) -> Pooled:
    if dataset == "default_credit":
        return _default_credit()
    d = Path(dataset.split(":", 1)[1] if dataset.startswith("synthetic:") else dataset)
    if not d.is_dir():
        raise DataError(
            "dataset must be 'default_credit' or a directory written by `fedcredit data synth`", file=str(d)
        )
    return _synthetic(d, seed)


def render_table(results: dict, title: str = "Centralised baselines (test set)") -> None:
    """Print ``results`` as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "features", "AUC", "KS", "Gini", "log-loss"):
        table.add_column(col, justify="left" if col in ("model", "features") else "right")
    for name in MODELS:
        m = results[name]
        kind, feats = name.split("_", 1)
        table.add_row(
            kind.upper(),
            "bank only" if feats == "bank_only" else "bank + centre",
            f"{m['auc']:.4f}",
            f"{m['ks']:.4f}",
            f"{m['gini']:.4f}",
            f"{m['log_loss']:.4f}",
        )
    Console().print(table)


def run_baseline(
    dataset: str = "default_credit", out: Path | None = None, seed: int = 42, *, show: bool = True
) -> dict:
    """Fit the four pooled models; write ``out/metrics.json`` if ``out`` is given; return the metrics."""
    data = _pooled(dataset, seed)
    log.info("baseline data: %s", data.note)
    results: dict[str, dict[str, float]] = {}
    for kind in ("lr", "gbdt"):
        for feats, x in (("bank_only", data.x_bank), ("joint", data.x_joint)):
            score = _fit_score(kind, x[0], data.y[0], x[1], seed)
            results[f"{kind}_{feats}"] = metrics.summary(data.y[1], score)
    results = {k: results[k] for k in MODELS}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        log.info("wrote %s", out / "metrics.json")
    if show:
        render_table(results, title=f"Centralised baselines -- {data.note}")
    return results
