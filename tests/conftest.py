"""Shared fixtures: Flower/Ray state in temp dirs, telemetry off, small real-data subsets."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FLWR_HOME", tempfile.mkdtemp(prefix="fedcredit-test-flwr-"))
os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="fcray-", dir="/tmp"))


def write_vertical_subset(directory, n_rows: int):
    """The first ``n_rows`` bank customers of default_credit (raw values) and the centre's rows for
    them, written as ``bank.csv`` / ``centre.csv`` in ``directory``; returns both DataFrames."""
    import numpy as np
    import pandas as pd

    from fedcredit.data.default_credit import load_vertical
    from fedcredit.data.schema import LABEL_COLUMN

    bank, centre = load_vertical("all", scaled=False)
    keep = set(bank.ids[:n_rows])
    b = pd.DataFrame(bank.features[:n_rows], columns=bank.feature_names)
    b.insert(0, "uscc", bank.ids[:n_rows])
    b.insert(1, LABEL_COLUMN, bank.labels[:n_rows])
    cm = np.array([u in keep for u in centre.ids])
    c = pd.DataFrame(centre.features[cm], columns=centre.feature_names)
    c.insert(0, "uscc", np.array(centre.ids)[cm])
    b.to_csv(f"{directory}/bank.csv", index=False)
    c.to_csv(f"{directory}/centre.csv", index=False)
    return b, c
