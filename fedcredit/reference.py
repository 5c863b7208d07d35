"""Centralised references for a federated run: what pooling the data would have given.

A researcher's yardstick, computed by the simulation harness only (it pools both parties' data,
which no production node ever does): the same aligned rows, the same bank-chosen test split and
the same per-party local preprocessing as the federated run, so the comparison isolates the
cost of the protocol itself.
"""

from __future__ import annotations

import numpy as np

from fedcredit import metrics
from fedcredit.config import Scenario
from fedcredit.config.scenario import PartySpec
from fedcredit.data.loaders import hash_split_mask, load_party_data
from fedcredit.data.party_data import PartyData
from fedcredit.data.readers import ReadOptions
from fedcredit.features import LocalPreprocessor


def pooled_vertical(scenario: Scenario, used: set[str] | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Bank and centre tables joined on USCC, split and preprocessed as the federated run does.

    ``used``: the ids the run actually trained and scored on (PSI intersection after the consent
    check); without it, every id both tables hold."""
    bank_spec = scenario.parties_with_role("bank")[0]
    centre_spec = scenario.parties_with_role("credit_centre")[0]
    bank, centre = _load(scenario, bank_spec, "bank"), _load(scenario, centre_spec, "credit_centre")
    pos = {u: i for i, u in enumerate(centre.ids)}
    keep = np.array([u in pos and (used is None or u in used) for u in bank.ids])
    ids = [u for u, k in zip(bank.ids, keep) if k]
    Xb = bank.features[keep]
    Xc = centre.features[[pos[u] for u in ids]]
    y = bank.require_labels()[keep].astype(np.int8)
    test = _test_mask(scenario, bank_spec.data, ids)
    out: dict[str, np.ndarray] = {}
    trees = scenario.mode == "secureboost"  # as the federated split phase: trees keep missing values
    for name, data, X in (("bank", bank, Xb), ("centre", centre, Xc)):
        cats = np.array([n in data.categorical for n in data.feature_names], dtype=bool)
        pre = LocalPreprocessor(keep_missing=trees).fit(X[~test], data.feature_names, passthrough=list(trees & cats))
        out[f"{name}_train"], out[f"{name}_test"] = pre.transform(X[~test]), pre.transform(X[test])
        out[f"{name}_categorical"] = cats
    out["y_train"], out["y_test"] = y[~test], y[test]
    return out, ids


def _load(scenario: Scenario, spec: PartySpec, role: str) -> PartyData:
    """One party's table read the way its node reads it (id/label columns, categorical, missing)."""
    opts = ReadOptions.from_mapping(spec.options, where=f"[parties.{spec.name}]")
    return load_party_data(
        scenario.resolve(spec.data), role, party=spec.name, seed=scenario.seed, scaled=False, opts=opts
    )


def _for_lr(X: np.ndarray, X_train: np.ndarray) -> np.ndarray:
    """A linear reference needs complete inputs: missing cells at the training mean (0 after
    z-scoring) plus one indicator per column that has missing training values."""
    miss = np.isnan(X_train).any(axis=0)
    return np.hstack([np.nan_to_num(X, nan=0.0), np.isnan(X[:, miss]).astype(np.float64)])


def _test_mask(scenario: Scenario, source: str, ids: list[str]) -> np.ndarray:
    if scenario.resolve(source) == "default_credit":
        from fedcredit.data.default_credit import train_test_ids, uscc_for_uci_id

        test_ids = {uscc_for_uci_id(int(i)) for i in train_test_ids(scenario.seed)[1]}
        return np.fromiter((u in test_ids for u in ids), dtype=bool, count=len(ids))
    return hash_split_mask(ids, scenario.seed)


def vertical_reference(
    scenario: Scenario, scores: dict[str, np.ndarray] | None = None, used: set[str] | None = None
) -> dict[str, dict[str, float]]:
    """Pooled logistic regression and GBDT on bank-only and joint features.

    If ``scores`` is a dict it receives the test labels (``y_test``) and each model's test
    probabilities, which the run report draws next to the federated model's curves.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from protocols.secureboost import SecureBoostConfig

    d, _ = pooled_vertical(scenario, used)
    joint_tr = np.hstack([d["bank_train"], d["centre_train"]])
    joint_te = np.hstack([d["bank_test"], d["centre_test"]])
    cats = {
        "bank_only": d["bank_categorical"],
        "joint": np.concatenate([d["bank_categorical"], d["centre_categorical"]]),
    }
    sb = scenario.settings(SecureBoostConfig)  # the pooled GBDT uses the federated run's tree settings
    out: dict[str, dict[str, float]] = {}
    for feats, (tr, te) in {"bank_only": (d["bank_train"], d["bank_test"]), "joint": (joint_tr, joint_te)}.items():
        lr = LogisticRegression(max_iter=5000).fit(_for_lr(tr, tr), d["y_train"])
        out[f"lr_{feats}"] = _m(d["y_test"], lr.decision_function(_for_lr(te, tr)))
        if scores is not None:
            scores[f"lr_{feats}"] = lr.predict_proba(_for_lr(te, tr))[:, 1]
        # categorical level codes as sklearn's native categories (missing values: NaN, natively)
        cat = cats[feats] if scenario.mode == "secureboost" else np.zeros(tr.shape[1], dtype=bool)
        fits = bool(cat.any()) and all(np.nanmax(tr[:, j], initial=0) < sb.max_bins for j in np.flatnonzero(cat))
        gb = HistGradientBoostingClassifier(
            categorical_features=cat if fits else None,
            max_iter=sb.n_trees,
            max_depth=sb.max_depth,
            max_bins=sb.max_bins,
            learning_rate=sb.learning_rate,
            early_stopping=False,
            random_state=scenario.seed,
        ).fit(tr, d["y_train"])
        out[f"gbdt_{feats}"] = _m(d["y_test"], gb.predict_proba(te)[:, 1])
        if scores is not None:
            scores[f"gbdt_{feats}"] = gb.predict_proba(te)[:, 1]
    if scores is not None:
        scores["y_test"] = d["y_test"]
    return out


def _m(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    m = metrics.summary(y, s)
    return {k: round(float(m[k]), 4) for k in ("auc", "ks", "gini")}
