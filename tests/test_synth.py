"""Synthetic SMEs: valid files, reproducibility, portfolio properties, joint-beats-bank-only."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedcredit.cli.main import app
from fedcredit.data import synth, uscc
from fedcredit.data.loaders import load_party_data


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_small")
    res = CliRunner().invoke(
        app, ["data", "synth", "--firms", "2000", "--banks", "3", "--out", str(out), "--seed", "7"]
    )
    assert res.exit_code == 0, res.output
    return out


def test_synth_files_pass_check(small):
    files = sorted(p.name for p in small.iterdir())
    assert files == ["README.md", "bank_a.csv", "bank_b.csv", "bank_c.csv", "credit_centre.csv"]
    runner = CliRunner()
    for name in files[1:]:
        role = "credit_centre" if name.startswith("credit") else "bank"
        res = runner.invoke(app, ["data", "check", str(small / name), "--role", role])
        assert res.exit_code == 0, res.output


def test_synth_columns_and_ids(small):
    centre = pd.read_csv(small / "credit_centre.csv", dtype={"uscc": str})
    assert list(centre.columns) == ["uscc", *synth.CENTRE_COLUMNS]
    assert centre["uscc"].is_unique and uscc.valid_mask(centre["uscc"].to_numpy()).all()
    assert set(centre["tax_grade_code"]) <= set(range(5))
    assert centre["dishonest_debtor"].isin([0, 1]).all()
    assert (centre["uscc"].str[2:8] == centre["district"].map(dict(enumerate(uscc.DIVISIONS)))).all()
    bank = pd.read_csv(small / "bank_a.csv", dtype={"uscc": str})
    assert list(bank.columns) == ["uscc", *synth.BANK_COLUMNS]
    assert "README" not in "".join(bank.columns)
    readme = (small / "README.md").read_text()
    assert "default_12m" in readme and "1[(existing_debt + loan_amount) / invoice_amount > 0.8]" in readme


def test_portfolios_overlap_and_unknown_customers(tmp_path):
    stats = synth.generate(20_000, 3, tmp_path, seed=11)
    centre = set(pd.read_csv(tmp_path / "credit_centre.csv", dtype={"uscc": str})["uscc"])
    banks = {b: pd.read_csv(tmp_path / f"{b}.csv", dtype={"uscc": str}) for b in ("bank_a", "bank_b", "bank_c")}
    ids = {b: set(df["uscc"]) for b, df in banks.items()}
    for b, s in ids.items():
        unknown = len(s - centre) / len(s)
        assert 0.03 < unknown < 0.2, (b, unknown)
    assert len(ids["bank_a"] & ids["bank_b"]) > 500  # partially overlapping customers
    assert ids["bank_a"] != ids["bank_b"]
    rates = [df["default_12m"].mean() for df in banks.values()]
    assert max(rates) - min(rates) > 0.015  # non-IID default rates
    inds = [
        df.merge(pd.read_csv(tmp_path / "credit_centre.csv", dtype={"uscc": str}), on="uscc")["industry"]
        .value_counts(normalize=True)
        .reindex(range(10), fill_value=0)
        for df in banks.values()
    ]
    assert max(np.abs(inds[0] - inds[1]).sum(), np.abs(inds[0] - inds[2]).sum()) > 0.2  # different mixes
    assert stats.centre_rows == len(centre)
    assert [s.rows for s in stats.banks] == [len(df) for df in banks.values()]


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_reproducible_and_seed_dependent(tmp_path):
    synth.generate(3000, 2, tmp_path / "a", seed=5, chunk=1000)
    synth.generate(3000, 2, tmp_path / "b", seed=5, chunk=1000)
    synth.generate(3000, 2, tmp_path / "c", seed=6, chunk=1000)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["bank_a.csv"] != _digest(tmp_path / "c")["bank_a.csv"]


def test_chunks_keep_ids_unique(tmp_path):
    synth.generate(5000, 2, tmp_path, seed=1, chunk=700, fmt="parquet")
    centre = load_party_data(f"synthetic:{tmp_path}", "credit_centre")
    bank = load_party_data(f"synthetic:{tmp_path}", "bank", party="b")
    assert len(set(centre.ids)) == len(centre.ids) > 3500
    assert bank.labels is not None and bank.n_features == 7
    assert len(set(bank.ids) - set(centre.ids)) > 0


def test_joint_modelling_beats_bank_only(tmp_path):
    from fedcredit.baseline import run_baseline

    synth.generate(20_000, 3, tmp_path, seed=3)
    res = run_baseline(str(tmp_path), show=False)
    assert res["lr_joint"]["auc"] > res["lr_bank_only"]["auc"] + 0.05
    assert res["gbdt_joint"]["auc"] > res["gbdt_bank_only"]["auc"] + 0.05
    assert res["gbdt_bank_only"]["auc"] > 0.6  # bank features carry signal too


def test_ground_truth_is_nonlinear_in_leverage():
    f = {
        k: np.zeros(2)
        for k in (
            "water_arrears",
            "power_arrears",
            "gas_arrears",
            "si_arrears_months",
            "dishonest_debtor",
            "consumption_restricted",
            "court_judgements",
            "admin_penalties",
            "_health",
        )
    }
    f.update(tax_grade_code=np.array([1, 1]), firm_age=np.array([10.0, 10.0]), invoice_amount=np.array([1e6, 1e6]))
    b = dict(
        existing_debt=np.array([0.0, 0.0]),
        loan_amount=np.array([7.9e5, 8.1e5]),
        collateral_ratio=np.zeros(2),
        account_inflow=np.ones(2),
        account_outflow=np.ones(2),
        term_months=np.array([12, 12]),
    )
    z = synth.default_logit(f, b, 0.0)
    assert z[1] - z[0] == pytest.approx(1.4)  # a threshold jump, not a linear slope


def test_bad_arguments():
    with pytest.raises(ValueError):
        synth.generate(0, 3, "/nonexistent")
    res = CliRunner().invoke(app, ["data", "synth", "--firms", "10", "--out", "/tmp/x", "--format", "xls"])
    assert res.exit_code != 0


@pytest.mark.slow
def test_million_firms_under_a_minute(tmp_path):
    import time

    t = time.perf_counter()
    stats = synth.generate(1_000_000, 3, tmp_path, seed=1)
    assert time.perf_counter() - t < 60
    assert stats.centre_rows > 700_000
