"""What a horizontal run's model is worth and what is kept of it: holdout metrics, the pooled
baseline, the saved model and the mode details of ``metrics.json``.

The coordinator evaluates only when it can read holdout rows (``evaluation = "holdout"``); the
baseline trains the same model on all banks' rows pooled in one place, which is what federated
training should approach.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedcredit import metrics as fmetrics
from fedcredit import models
from fedcredit.config import Scenario
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal import dp as hdp
from fedcredit.horizontal import local
from fedcredit.horizontal.aggregation import auto_quantization_range, auto_shares
from fedcredit.horizontal.settings import HorizontalSettings
from parties.horizontal.run_state import HorizontalRun, HorizontalRunError


def preprocessor(run: HorizontalRun) -> hdata.Preprocessor:
    if run.settings.standardize == "federated":
        if run.moments is None:
            raise HorizontalRunError("the standardisation moments were not released")
        mean, std = hdata.moments_to_mean_std(run.moments)
        return hdata.Preprocessor(run.settings.transform, mean, std)
    return hdata.Preprocessor(run.settings.transform)


def _score(model: Any, data: Any, prep: hdata.Preprocessor) -> dict[str, float]:
    p = models.predict_proba(model, prep(data.features))
    s = fmetrics.summary(data.labels, p)
    return {k: round(float(v), 6) for k, v in s.items() if k in ("auc", "ks", "gini", "log_loss")}


def _build(run: HorizontalRun, arrays: list[np.ndarray]) -> Any:
    model = models.build_model(local.model_spec(run.settings, run.banks[0].n_features))
    models.set_weights(model, arrays)
    return model


def evaluate(run: HorizontalRun, arrays: list[np.ndarray]) -> dict[str, float]:
    return _score(_build(run, arrays), run.holdout, preprocessor(run))


_BASELINES: dict[tuple, dict[str, float] | None] = {}


def _baseline_key(scenario: Scenario, s: HorizontalSettings) -> tuple:
    banks = tuple((n, scenario.resolve(scenario.party(n).data)) for n in hdata.bank_names(scenario))
    return (
        banks,
        scenario.seed,
        s.skew,
        s.max_rows_per_bank,
        s.transform,
        s.standardize,
        s.model,
        s.hidden,
        s.rounds,
        s.local_epochs,
        s.batch_size,
        s.lr,
        s.optimizer,
        s.weight_decay,
        s.class_weight,
    )


def centralised_baseline(scenario: Scenario, settings: HorizontalSettings) -> dict[str, float] | None:
    """The same model trained on all banks' rows pooled in one place (what FL should approach).

    Cached per (data, model, training settings): modes compared side by side share it."""
    key = _baseline_key(scenario, settings)
    if key not in _BASELINES:
        _BASELINES[key] = _pooled_training(scenario, settings)
    return _BASELINES[key]


def _pooled_training(scenario: Scenario, settings: HorizontalSettings) -> dict[str, float] | None:
    holdout = hdata.load_holdout(scenario, settings)
    if holdout is None:
        return None
    pooled = hdata.load_pooled_train(scenario, settings)
    if pooled.labels is None:
        raise HorizontalRunError(f"{scenario.name}: the pooled training rows have no labels")
    base = hdata.Preprocessor(settings.transform)
    if settings.standardize == "federated":
        mean, std = hdata.moments_to_mean_std(hdata.local_moments(base.base(pooled.features)))
        prep = hdata.Preprocessor(settings.transform, mean, std)
    else:
        prep = base
    spec = local.model_spec(settings, pooled.n_features)
    model = models.build_model(spec, seed=scenario.seed)
    cfg = models.TrainConfig(
        epochs=settings.rounds * settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        optimizer=settings.optimizer,
        weight_decay=settings.weight_decay,
        pos_weight=models.pos_weight(pooled.labels, settings.class_weight),
        seed=scenario.seed,
    )
    models.train(model, prep(pooled.features), pooled.labels, cfg)
    s = fmetrics.summary(holdout.labels, models.predict_proba(model, prep(holdout.features)))
    return {k: round(float(v), 6) for k, v in s.items() if k in ("auc", "ks", "gini", "log_loss")}


def save_model(run: HorizontalRun, arrays: list[np.ndarray], out_dir: Path, feature_names: list[str] | None) -> dict:
    prep = preprocessor(run)
    doc = {
        "kind": run.settings.model,
        "hidden": list(run.settings.hidden),
        "n_features": run.banks[0].n_features,
        "feature_names": feature_names,
        "transform": prep.transform,
        "mean": None if prep.mean is None else prep.mean.tolist(),
        "std": None if prep.std is None else prep.std.tolist(),
        "weights": [a.tolist() for a in arrays],
        "shapes": [list(a.shape) for a in arrays],
        "scenario_sha256": run.scenario.config_hash,
    }
    data = json.dumps(doc, sort_keys=True).encode()
    path = out_dir / "horizontal_model.json"
    path.write_bytes(data)
    return {"path": str(path), "sha256": hashlib.sha256(data).hexdigest()}


def mode_details(run: HorizontalRun, s: HorizontalSettings) -> dict:
    out: dict[str, Any] = {}
    n_params = sum(int(np.prod(sh)) for sh in run.shapes)
    if s.aggregation == "secagg+":
        shares, threshold = auto_shares(len(run.banks))
        out["secagg"] = {
            "num_shares": s.secagg.num_shares or shares,
            "reconstruction_threshold": s.secagg.reconstruction_threshold or threshold,
            "quantization_range": s.secagg.quantization_range
            or auto_quantization_range(len(run.banks), s.secagg.modulus_range),
            "modulus_range": s.secagg.modulus_range,
            "max_weight": run.n_ref,
            "clipping_ranges": run.secagg_ranges,
        }
    if s.aggregation == "ckks":
        up = run.ckks_upload_bytes
        out["ckks"] = {
            "poly_modulus_degree": s.ckks.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(s.ckks.coeff_mod_bit_sizes),
            "scale_bits": s.ckks.scale_bits,
            "params_fingerprint": run.ckks_agg.params_fp if run.ckks_agg else "",
            "key_fingerprint": run.key_fp,
            "upload_bytes_per_bank": int(np.mean(up)) if up else 0,
            "bytes_ratio_vs_float32": round(float(np.mean(up)) / (4 * n_params), 2) if up else None,
        }
    if s.dp.kind == "central":
        out["dp"] = hdp.central_report(
            s.dp.noise_multiplier, s.dp.clipping_norm, s.rounds, s.dp.delta, [b.n_train for b in run.banks]
        ).to_dict()
    elif s.dp.kind == "local":
        out["dp"] = hdp.local_report(
            s.dp.epsilon, s.dp.delta, s.dp.clipping_norm, s.dp.local_sensitivity, s.rounds
        ).to_dict()
    return out
