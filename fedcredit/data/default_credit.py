"""The bundled UCI "default of credit card clients" data (see fedcredit/datasets/ATTRIBUTION.md).

Split exactly as FATE's examples split it, so results compare with FATE's: the label-holding
bank has the 13 repayment-history columns (FATE's guest), the credit centre the 10 profile and
recent-status columns (FATE's host). Each record gets a deterministic valid USCC so the data
flows through PSI like real enterprise data. The train/test split is scikit-learn's stratified
70/30 split with ``random_state=42`` over rows in UCI ID order, which reproduces the reference
numbers in ANCHORS.md (21,000 train / 9,000 test).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from fedcredit.data import uscc
from fedcredit.data.party_data import PartyData
from fedcredit.data.schema import ID_COLUMN, LABEL_COLUMN

BANK_FEATURES: list[str] = ["PAY_6"] + [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)]
CENTRE_FEATURES: list[str] = ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0"] + [
    f"PAY_{i}" for i in range(2, 6)
]
RAW_LABEL = "default_next_month"
N_ROWS = 30_000
CENTRE_ORDER_SEED = 20_091  # the centre's rows come in its own order, unrelated to the bank's


def uscc_for_uci_id(i: int) -> str:
    """The deterministic valid USCC standing in for UCI record ``i`` (spread over DIVISIONS)."""
    return uscc.from_index(int(i), division=uscc.DIVISIONS[int(i) % len(uscc.DIVISIONS)])


@lru_cache(maxsize=1)
def _raw() -> pd.DataFrame:
    with resources.files("fedcredit.datasets").joinpath("default_credit.csv.gz").open("rb") as fh:
        df = pd.read_csv(fh, compression="gzip")
    if len(df) != N_ROWS or RAW_LABEL not in df.columns:
        raise RuntimeError("bundled default_credit.csv.gz is damaged (unexpected shape/columns)")
    df = df.sort_values("ID", kind="mergesort").reset_index(drop=True)
    ids = df["ID"].to_numpy()
    df[ID_COLUMN] = uscc.from_indices(ids, ids % len(uscc.DIVISIONS)).astype(object)
    df[LABEL_COLUMN] = df[RAW_LABEL].astype(np.int8)
    return df


def load_raw() -> pd.DataFrame:
    """The bundled table in UCI ID order, plus ``uscc`` and ``default_12m`` (= default_next_month)."""
    return _raw().copy()


@lru_cache(maxsize=4)
def _split(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    df = _raw()
    tr, te = train_test_split(df["ID"].to_numpy(), test_size=0.3, random_state=seed, stratify=df[RAW_LABEL].to_numpy())
    return tr, te


def train_test_ids(seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """UCI IDs of the (train, test) rows: stratified 70/30, in scikit-learn's shuffled order."""
    tr, te = _split(seed)
    return tr.copy(), te.copy()


def _rows(part: str, seed: int = 42) -> np.ndarray:
    """Row positions (ID order = position + 1) of ``part``, sorted."""
    if part == "all":
        return np.arange(N_ROWS)
    tr, te = _split(seed)
    if part == "train":
        return np.sort(tr) - 1
    if part == "test":
        return np.sort(te) - 1
    raise ValueError(f"part must be 'train', 'test' or 'all', got {part!r}")


def _zscore(df: pd.DataFrame, cols: list[str], train_rows: np.ndarray) -> np.ndarray:
    x = df[cols].to_numpy(dtype=np.float64)
    mu = x[train_rows].mean(axis=0)
    sd = x[train_rows].std(axis=0)
    return (x - mu) / np.where(sd > 0, sd, 1.0)


def load_vertical(part: str = "all", *, scaled: bool = True) -> tuple[PartyData, PartyData]:
    """(bank, credit centre) for ``part``; each party z-scores its features with TRAIN statistics.

    The bank's rows are in UCI ID order; the centre's are in a fixed shuffled order of their own,
    as two real organisations' tables would be, so protocols must align them by USCC (PSI).
    ``scaled=False`` returns the raw UCI values, for pipelines that fit their own local
    preprocessing on the training rows (see :mod:`fedcredit.features`).
    """
    df = _raw()
    rows = _rows(part)
    train = _rows("train")
    ids = df[ID_COLUMN].to_numpy()
    bank = PartyData(
        ids=ids[rows].tolist(),
        features=(_zscore(df, BANK_FEATURES, train) if scaled else df[BANK_FEATURES].to_numpy(dtype=np.float64))[rows],
        feature_names=list(BANK_FEATURES),
        labels=df[LABEL_COLUMN].to_numpy()[rows],
    )
    centre_rows = np.random.default_rng(CENTRE_ORDER_SEED).permutation(rows)
    centre = PartyData(
        ids=ids[centre_rows].tolist(),
        features=(_zscore(df, CENTRE_FEATURES, train) if scaled else df[CENTRE_FEATURES].to_numpy(dtype=np.float64))[
            centre_rows
        ],
        feature_names=list(CENTRE_FEATURES),
        labels=None,
    )
    return bank, centre


def load_horizontal(n_banks: int = 3, *, skew: float = 0.0, seed: int = 42) -> tuple[list[PartyData], PartyData]:
    """Train rows split across ``n_banks`` banks (all 23 features + labels), and the test set.

    ``skew=0`` deals rows out IID (random, equal sizes). ``skew`` in (0, 1] makes portfolios
    differ: rows are grouped into 8 strata (label x LIMIT_BAL quartile) and each stratum is
    shared among banks with proportions ``(1 - skew) / n + skew * Dirichlet(0.5)``, so default
    rates and credit-limit mixes differ per bank, more so as skew grows. Every bank keeps at
    least 2 % of each stratum so no bank is empty or single-class.
    """
    if n_banks < 1:
        raise ValueError("n_banks must be >= 1")
    if not 0.0 <= skew <= 1.0:
        raise ValueError("skew must be in [0, 1]")
    df = _raw()
    train, test = _rows("train"), _rows("test")
    cols = BANK_FEATURES + CENTRE_FEATURES
    x = _zscore(df, cols, train)
    ids = df[ID_COLUMN].to_numpy()
    y = df[LABEL_COLUMN].to_numpy()
    rng = np.random.default_rng(seed)

    def party(rows: np.ndarray) -> PartyData:
        return PartyData(ids=ids[rows].tolist(), features=x[rows], feature_names=list(cols), labels=y[rows])

    shuffled = rng.permutation(train)
    if skew == 0.0:
        parts = np.array_split(shuffled, n_banks)
    else:
        limit = df["LIMIT_BAL"].to_numpy()[shuffled]
        quart = np.searchsorted(np.quantile(limit, [0.25, 0.5, 0.75]), limit, side="right")
        stratum = y[shuffled] * 4 + quart
        buckets: list[list[np.ndarray]] = [[] for _ in range(n_banks)]
        for s in range(8):
            members = shuffled[stratum == s]
            p = (1.0 - skew) / n_banks + skew * rng.dirichlet(np.full(n_banks, 0.5))
            p = np.maximum(p, 0.02)
            p /= p.sum()
            cuts = np.round(np.cumsum(p)[:-1] * members.size).astype(int)
            for b, chunk in enumerate(np.split(members, cuts)):
                buckets[b].append(chunk)
        parts = [np.sort(np.concatenate(b)) for b in buckets]
    return [party(np.asarray(p)) for p in parts], party(test)
