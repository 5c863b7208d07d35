"""What a bank does in one horizontal round, without Flower: load its rows, preprocess, train
from the global weights (FedAvg/FedProx), or compute feature moments for federated
standardisation. ``parties/horizontal/client.py`` wraps this in Flower messages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fedcredit import models
from fedcredit.config import Scenario
from fedcredit.data.party_data import PartyData
from fedcredit.horizontal import data as hdata
from fedcredit.horizontal.aggregation import UpdateRejected
from fedcredit.horizontal.settings import HorizontalSettings, from_scenario

log = logging.getLogger(__name__)

STATS_BOUND = 4096.0  # |moment| a bank may send: |x| <= 64 after the public transform


_DATA_CACHE: dict[tuple[str, str, str, str], PartyData] = {}


def bank_data(scenario: Scenario, party: str, part: str = "train") -> PartyData:
    """Cached per (scenario, party): simulated banks share a process and must not reload."""
    key = (scenario.config_hash, str(scenario.path), party, part)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) > 128:
            _DATA_CACHE.clear()
        _DATA_CACHE[key] = hdata.load_bank(scenario, from_scenario(scenario), party, part)
    return _DATA_CACHE[key]


def model_spec(settings: HorizontalSettings, n_features: int) -> models.ModelSpec:
    return models.ModelSpec(kind=settings.model, n_features=n_features, hidden=tuple(settings.hidden))


def initial_weights(settings: HorizontalSettings, n_features: int, seed: int) -> list[np.ndarray]:
    return models.get_weights(models.build_model(model_spec(settings, n_features), seed=seed))


def round_seed(scenario_seed: int, bank_index: int, rnd: int) -> int:
    return (scenario_seed * 1_000_003 + bank_index * 7919 + rnd) % (2**31)


@dataclass
class LocalResult:
    arrays: list[np.ndarray]
    n: int
    metrics: dict[str, float]


def preprocessor(settings: HorizontalSettings, mean: list[float] | None, std: list[float] | None) -> hdata.Preprocessor:
    if settings.standardize == "federated":
        if mean is None or std is None:
            raise ValueError("federated standardisation is on but the round carried no feature moments")
        return hdata.Preprocessor(
            settings.transform, np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        )
    return hdata.Preprocessor(settings.transform)


def compute_moments(scenario: Scenario, settings: HorizontalSettings, party: str) -> LocalResult:
    """[mean, mean of squares] of the publicly transformed features (federated standardisation)."""
    d = bank_data(scenario, party)
    moments = hdata.local_moments(hdata.Preprocessor(settings.transform).base(d.features))
    peak = float(np.abs(moments).max()) if moments.size else 0.0
    if peak > STATS_BOUND:
        raise UpdateRejected(
            party,
            f"feature moments reach {peak:.3g} > {STATS_BOUND:g}; set "
            "[horizontal] transform = 'signed_log1p' for raw monetary columns",
        )
    return LocalResult(arrays=[moments], n=len(d), metrics={})


def train_round(
    scenario: Scenario,
    settings: HorizontalSettings,
    party: str,
    global_arrays: list[np.ndarray],
    rnd: int,
    prep: hdata.Preprocessor,
) -> LocalResult:
    """Train from ``global_arrays`` on this bank's rows; returns the new weights and n."""
    import torch

    torch.set_num_threads(1)  # banks train small models; threads only fight over a small machine's cores
    d = bank_data(scenario, party)
    x = prep(d.features)
    model = models.build_model(model_spec(settings, d.n_features))
    models.set_weights(model, global_arrays)
    idx = hdata.bank_names(scenario).index(party)
    cfg = models.TrainConfig(
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        optimizer=settings.optimizer,
        mu=settings.fedprox_mu,
        weight_decay=settings.weight_decay,
        pos_weight=models.pos_weight(d.require_labels(), settings.class_weight),
        seed=round_seed(scenario.seed, idx, rnd),
    )
    stats = models.train(model, x, d.require_labels(), cfg)
    return LocalResult(arrays=models.get_weights(model), n=len(d), metrics=stats)


def apply_fault(kind: str, party: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Simulated misbehaviour (``[[horizontal.simulate_faults]]``), applied after local training
    and before any of the bank's own checks, like a bug in the training code would be."""
    if not kind:
        return arrays
    log.warning("%s: injecting simulated fault %r", party, kind)
    out = [a.copy() for a in arrays]
    if kind == "raise":
        raise RuntimeError(f"{party}: simulated failure in the middle of the round")
    if kind == "nan":
        out[0].flat[0] = np.nan
    elif kind == "inf":
        out[-1].flat[-1] = np.inf
    elif kind == "shape":
        out[0] = out[0][..., :-1] if out[0].ndim else out[0]
        if out[0].size == arrays[0].size:
            out = out[:-1]
    elif kind == "range":
        out = [a * 1e6 + 1e6 for a in out]
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return out
