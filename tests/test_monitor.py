"""`fedcredit monitor psi|csi` (issue 17): stable samples pass, a planted shift is flagged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedcredit.data import uscc
from fedcredit.data.stability import stability


def _cli(*args):
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    return CliRunner().invoke(app, list(map(str, args)))


def test_psi_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    dev = rng.normal(size=(4000, 1))
    recent = rng.normal(loc=0.5, size=(4000, 1))
    got = stability(dev, recent, ["s"], n_bins=4)[0]
    # independent: quartiles of dev with pandas, PSI formula written out
    edges = np.quantile(dev[:, 0], [0.25, 0.5, 0.75], method="lower")  # bins cut at observed values
    e = pd.Series(np.searchsorted(edges, dev[:, 0], side="right")).value_counts(normalize=True).sort_index()
    a = pd.Series(np.searchsorted(edges, recent[:, 0], side="right")).value_counts(normalize=True).sort_index()
    ref = float(((a - e) * np.log(a / e)).sum())
    assert got.psi == pytest.approx(ref, rel=1e-9)
    assert got.verdict == ("shifted" if ref >= 0.25 else "watch" if ref >= 0.1 else "stable")


def test_psi_command_flags_a_shift(tmp_path):
    rng = np.random.default_rng(1)
    dev, same, shifted = tmp_path / "dev.csv", tmp_path / "same.csv", tmp_path / "shift.csv"
    pd.DataFrame({"score": rng.normal(600, 50, 5000)}).to_csv(dev, index=False)
    pd.DataFrame({"score": rng.normal(600, 50, 5000)}).to_csv(same, index=False)
    pd.DataFrame({"score": rng.normal(650, 50, 5000)}).to_csv(shifted, index=False)
    res = _cli("monitor", "psi", dev, same)
    assert res.exit_code == 0 and "stable" in res.output, res.output
    out = tmp_path / "psi.json"
    res = _cli("monitor", "psi", dev, shifted, "--out", out)
    assert res.exit_code == 1 and "shifted" in res.output
    assert json.loads(out.read_text())[0]["psi"] > 0.25
    res = _cli("monitor", "psi", dev, shifted, "--column", "nope")
    assert res.exit_code == 2 and "no score column 'nope'" in res.output


def test_csi_per_column_with_missing_shift_and_new_level(tmp_path):
    rng = np.random.default_rng(2)
    ids = [str(u) for u in uscc.generate(6000, rng)]

    def table(rows, miss, grades):
        x = rng.normal(size=len(rows))
        x[rng.random(len(rows)) < miss] = np.nan
        return pd.DataFrame({"uscc": rows, "tax": x, "stable_col": rng.normal(size=len(rows)), "grade": grades})

    dev = table(ids[:3000], 0.05, rng.choice(["A", "B", "C"], 3000))
    recent = table(ids[3000:], 0.40, rng.choice(["A", "B", "C", "D"], 3000, p=[0.2, 0.2, 0.2, 0.4]))
    pd_dev, pd_recent = tmp_path / "dev.csv", tmp_path / "recent.csv"
    dev.to_csv(pd_dev, index=False)
    recent.to_csv(pd_recent, index=False)
    out = tmp_path / "csi.json"
    res = _cli("monitor", "csi", pd_dev, pd_recent, "--role", "credit_centre", "--categorical", "grade", "--out", out)
    assert res.exit_code == 1, res.output
    rows = {r["column"]: r for r in json.loads(out.read_text())}
    assert rows["stable_col"]["verdict"] == "stable"
    assert rows["tax"]["psi"] > 0.25 and rows["tax"]["recent_missing_rate"] > 0.3  # the missing bin moved
    assert rows["grade"]["psi"] > 0.25  # a new level "D" lands in the missing/unknown bin
