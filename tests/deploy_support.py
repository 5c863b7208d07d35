"""Shared set-up for the deployment tests: a small vertical scenario on a subset of the bundled data.

Bank and credit centre get CSV tables (the ``data`` a real node would hold) with 4,000 rows each
and 3,600 enterprises in common, so PSI has something to do. ``validation_fraction = 0`` keeps the
run deterministic for a given seed (the validation draw follows the PSI order, which depends on
the random ECDH keys), so simulation and deployment must agree exactly; one full-batch epoch and
a 1024-bit test key keep the number of Flower round trips and the CPU time small.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedcredit.data.default_credit import load_vertical

SCENARIO = """
[run]
name = "deploy-test"
mode = "vertical-lr"
seed = 7
step_timeout = 150

[parties.bank]
role = "bank"
data = "{bank}"

[parties.credit_centre]
role = "credit_centre"
data = "{centre}"

[consent]
mode = "demo"

[evaluation]
validation_fraction = 0.0

[lr]
epochs = 1
batch_size = 8192
key_bits = 1024
insecure_test_key = true
"""


def write_subset(directory: Path, n_bank: int = 4000, offset: int = 400) -> Path:
    """Write bank.csv, centre.csv and scenario.toml under ``directory``; return the scenario path."""
    directory.mkdir(parents=True, exist_ok=True)
    bank, centre = load_vertical("all", scaled=False)
    b = pd.DataFrame(bank.features[:n_bank], columns=bank.feature_names)
    b.insert(0, "uscc", bank.ids[:n_bank])
    b.insert(1, "default_12m", bank.labels[:n_bank])  # type: ignore[index]  # the bank table always has labels
    keep = set(bank.ids[offset : n_bank + offset])
    rows = [i for i, u in enumerate(centre.ids) if u in keep]  # the centre's own (shuffled) order
    c = pd.DataFrame(centre.features[rows], columns=centre.feature_names)
    c.insert(0, "uscc", [centre.ids[i] for i in rows])
    b.to_csv(directory / "bank.csv", index=False)
    c.to_csv(directory / "centre.csv", index=False)
    path = directory / "scenario.toml"
    path.write_text(SCENARIO.format(bank=directory / "bank.csv", centre=directory / "centre.csv"))
    return path
