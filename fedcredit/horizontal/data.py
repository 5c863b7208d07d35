"""Where a bank's horizontal training rows come from, and the feature preprocessing.

Banks share one schema. Sources per bank (``PartySpec.data``):

* ``default_credit`` -- the bundled UCI data split by rows across the scenario's banks with
  :func:`fedcredit.data.default_credit.load_horizontal` (``[horizontal] skew`` makes it non-IID);
* ``synthetic:DIR`` or a CSV/Parquet path -- the bank's own table, train part by USCC hash.

The holdout set and the pooled training set exist only where the coordinator can read the data
(simulation and research); in a deployment they are simply unavailable and the run reports
no holdout metrics.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fedcredit.config import ConfigError, Scenario
from fedcredit.data.party_data import PartyData
from fedcredit.horizontal.settings import HorizontalSettings

log = logging.getLogger(__name__)


def bank_names(scenario: Scenario) -> list[str]:
    """The scenario's banks in file order (bank index = position in this list)."""
    return [p.name for p in scenario.parties_with_role("bank")]


@lru_cache(maxsize=8)
def _default_credit_split(n_banks: int, skew: float, seed: int) -> tuple[tuple[PartyData, ...], PartyData]:
    from fedcredit.data.default_credit import load_horizontal

    banks, test = load_horizontal(n_banks, skew=skew, seed=seed)
    return tuple(banks), test


def _limit(data: PartyData, max_rows: int, seed: int) -> PartyData:
    if max_rows <= 0 or len(data) <= max_rows:
        return data
    rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:max_rows])
    return data.subset(rows)


def _source(scenario: Scenario, party: str) -> str:
    spec = scenario.party(party)
    if spec.role != "bank":
        raise ConfigError(f"party {party!r} has role {spec.role!r}; horizontal data is for banks")
    return scenario.resolve(spec.data)


def load_bank(scenario: Scenario, settings: HorizontalSettings, party: str, part: str = "train") -> PartyData:
    """Bank ``party``'s rows (``part`` = "train" or "test") for this scenario."""
    names = bank_names(scenario)
    source = _source(scenario, party)
    idx = names.index(party)
    if source == "default_credit":
        banks, test = _default_credit_split(len(names), settings.skew, scenario.seed)
        if part == "train":
            data = banks[idx]
        else:  # each bank holds an equal slice of the common test rows
            data = test.subset(np.array_split(np.arange(len(test)), len(names))[idx])
    else:
        from fedcredit.data.loaders import load_party_data

        data = load_party_data(source, "bank", party=party, part=part, seed=scenario.seed)
    if data.labels is None:
        raise ConfigError(f"{party}: its data ({source}) has no label column; a bank needs labels")
    if part == "train":
        data = _limit(data, settings.max_rows_per_bank, scenario.seed + idx)
    return data


def load_holdout(scenario: Scenario, settings: HorizontalSettings) -> PartyData | None:
    """The common test rows when the coordinator can read them (simulation), else None."""
    names = bank_names(scenario)
    sources = {_source(scenario, n) for n in names}
    try:
        if sources == {"default_credit"}:
            return _default_credit_split(len(names), settings.skew, scenario.seed)[1]
        parts = [load_bank(scenario, settings, n, part="test") for n in names]
    except (OSError, ValueError) as exc:  # files not readable here: deployment
        log.info("no holdout set readable by the coordinator (%s); holdout metrics skipped", exc)
        return None
    return concat(parts)


def load_pooled_train(scenario: Scenario, settings: HorizontalSettings) -> PartyData:
    """All banks' training rows in one table: the centralised baseline (research only)."""
    return concat([load_bank(scenario, settings, n) for n in bank_names(scenario)])


def concat(parts: list[PartyData]) -> PartyData:
    names = parts[0].feature_names
    for p in parts[1:]:
        if p.feature_names != names:
            raise ConfigError("banks' tables have different feature columns; horizontal training needs one schema")
    return PartyData(
        ids=[i for p in parts for i in p.ids],
        features=np.concatenate([p.features for p in parts]),
        feature_names=list(names),
        labels=np.concatenate([p.labels for p in parts]),
    )


def schema_digest(feature_names: list[str]) -> str:
    """SHA-256 of the ordered feature names: banks must agree on it before training."""
    return hashlib.sha256("\x1f".join(feature_names).encode()).hexdigest()


@dataclass(frozen=True)
class Preprocessor:
    """Public transform then (optionally federated) standardisation, identical on every node."""

    transform: str = "none"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def base(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.transform == "signed_log1p":
            return np.sign(x) * np.log1p(np.abs(x))
        if self.transform != "none":
            raise ValueError(f"unknown transform {self.transform!r}")
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = self.base(x)
        if self.mean is not None and self.std is not None:
            z = (z - self.mean) / self.std
        return z


def local_moments(x: np.ndarray) -> np.ndarray:
    """Per-feature [mean, mean of squares] stacked: weighted by n they average to pooled moments."""
    return np.stack([x.mean(axis=0), (x * x).mean(axis=0)])


def moments_to_mean_std(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sq = moments[0], moments[1]
    var = np.maximum(sq - mean * mean, 0.0)
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12, std, 1.0)
