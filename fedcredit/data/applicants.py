"""Applicant tables: the enterprises a bank wants to score, validated like a bank table minus the label.

A bank's training table must carry the label ``default_12m``; new loan applicants have no outcome
yet. An applicant table is the bank's schema with the label *optional* (ignored when present, e.g.
for back-testing on historical applicants): ``uscc`` plus numeric feature columns, every USCC
valid and unique. The columns the scoring model needs are picked by name, so column order and
extra columns do not matter, and a missing one is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedcredit.data.party_data import PartyData
from fedcredit.data.schema import ID_COLUMN, LABEL_COLUMN, DataError
from fedcredit.data.validate import check_frame, read_table


def load_applicants(path: str | Path, feature_names: list[str] | None = None) -> PartyData:
    """Load and validate an applicant table; ``feature_names`` selects (and orders) the columns.

    Raises :class:`DataError` naming the file, row and column of the first problem.
    """
    df = read_table(path)
    if df.shape[1] == 0:
        raise DataError("empty file: no columns", file=str(path))
    has_label = LABEL_COLUMN in df.columns
    if not has_label:
        # Validate exactly as a bank table (ids, numeric features), with a placeholder label.
        df[LABEL_COLUMN] = 0
    rep = check_frame(df, "bank", str(path))
    rep.raise_if_bad()
    names = [c for c in df.columns if c not in (ID_COLUMN, LABEL_COLUMN)]
    if feature_names is not None:
        missing = [c for c in feature_names if c not in names]
        if missing:
            raise DataError(
                f"missing feature column(s) {missing} that the bank's model uses (table has {names})",
                file=str(path),
                column=missing[0],
            )
        names = list(feature_names)
    return PartyData(
        ids=df[ID_COLUMN].tolist(),
        features=df[names].to_numpy(dtype=np.float64) if names else np.zeros((len(df), 0)),
        feature_names=names,
        labels=None,
    )


def demo_applicants(n: int = 200, n_unknown: int = 10, seed: int = 42):
    """A demo applicant table for the bundled data (``configs/data/applicants-demo.csv``).

    ``n - n_unknown`` enterprises from default_credit's held-out test part (the bank's raw
    features, no label) and ``n_unknown`` new enterprises with valid USCCs the credit centre does
    not hold (features copied from other applicants), in a shuffled order.
    """
    import pandas as pd

    from fedcredit.data import uscc
    from fedcredit.data.default_credit import load_vertical

    bank, centre = load_vertical("test", scaled=False)
    if not 0 <= n_unknown <= n <= len(bank):
        raise ValueError(f"need 0 <= n_unknown <= n <= {len(bank)}, got n={n}, n_unknown={n_unknown}")
    rng = np.random.default_rng(seed)
    known = rng.choice(len(bank), size=n - n_unknown, replace=False)
    held = set(load_vertical("all", scaled=False)[1].ids)
    new_ids = [u for u in uscc.generate(n_unknown * 2 + 10, rng) if u not in held][:n_unknown]
    donors = rng.choice(len(bank), size=n_unknown, replace=True)
    ids = [bank.ids[i] for i in known] + new_ids
    X = np.vstack([bank.features[known], bank.features[donors]])
    order = rng.permutation(n)
    df = pd.DataFrame(X[order], columns=bank.feature_names)
    df.insert(0, ID_COLUMN, np.asarray(ids, dtype=object)[order])
    return df
