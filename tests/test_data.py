"""Loaders, the bundled split and party-table validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.data import default_credit as dc
from fedcredit.data import uscc
from fedcredit.data.loaders import PartyData, load_party_data, load_party_table
from fedcredit.data.schema import DataError


def test_feature_split_is_fates():
    assert len(dc.BANK_FEATURES) == 13 and len(dc.CENTRE_FEATURES) == 10
    assert dc.BANK_FEATURES[0] == "PAY_6" and dc.CENTRE_FEATURES[0] == "LIMIT_BAL"
    assert not set(dc.BANK_FEATURES) & set(dc.CENTRE_FEATURES)


def test_raw_table_and_ids():
    raw = dc.load_raw()
    assert len(raw) == 30_000
    assert int(raw["default_12m"].sum()) == 6636
    assert raw["uscc"].is_unique
    assert uscc.valid_mask(raw["uscc"].to_numpy()).all()
    assert raw["uscc"].iat[0] == dc.uscc_for_uci_id(1)
    assert dc.uscc_for_uci_id(7) != dc.uscc_for_uci_id(8)


def test_split_sizes_and_stratification():
    tr, te = dc.train_test_ids()
    assert len(tr) == 21_000 and len(te) == 9_000
    assert not set(tr) & set(te)
    assert set(tr) | set(te) == set(range(1, 30_001))
    y = dc.load_raw().set_index("ID")["default_12m"]
    assert y.loc[tr].mean() == pytest.approx(6636 / 30_000, abs=5e-4)
    assert y.loc[te].mean() == pytest.approx(6636 / 30_000, abs=5e-4)
    tr2, _ = dc.train_test_ids()
    assert np.array_equal(tr, tr2)


def test_load_vertical_train():
    bank, centre = dc.load_vertical("train")
    assert isinstance(bank, PartyData)
    assert bank.features.shape == (21_000, 13) and centre.features.shape == (21_000, 10)
    assert bank.features.dtype == np.float64 and bank.labels.dtype == np.int8
    assert centre.labels is None
    assert set(bank.ids) == set(centre.ids)
    assert bank.ids != centre.ids  # different row orders, as two organisations' tables
    # z-scored with train statistics
    assert np.allclose(bank.features.mean(axis=0), 0, atol=1e-9)
    assert np.allclose(centre.features.std(axis=0), 1, atol=1e-9)
    # aligned rows carry the same record: check LIMIT_BAL (centre) vs raw via the id
    raw = dc.load_raw().set_index("uscc")
    al = centre.select(bank.ids[:50])
    lim = raw.loc[bank.ids[:50], "LIMIT_BAL"].to_numpy()
    assert np.corrcoef(al.features[:, 0], lim)[0, 1] == pytest.approx(1.0)


def test_load_vertical_test_part_uses_train_stats():
    bank_te, centre_te = dc.load_vertical("test")
    assert len(bank_te) == 9_000 and len(centre_te) == 9_000
    assert not np.allclose(bank_te.features.mean(axis=0), 0, atol=1e-6)
    bank_all, _ = dc.load_vertical("all")
    assert len(bank_all) == 30_000


def test_party_data_subset_keeps_order():
    bank, _ = dc.load_vertical("test")
    sub = bank.subset(np.array([5, 2, 9]))
    assert sub.ids == [bank.ids[5], bank.ids[2], bank.ids[9]]
    assert np.array_equal(sub.features[1], bank.features[2])
    assert sub.labels.tolist() == [bank.labels[5], bank.labels[2], bank.labels[9]]


def test_load_horizontal_iid_and_skewed():
    banks, test = dc.load_horizontal(3)
    assert [len(b) for b in banks] == [7000, 7000, 7000]
    assert len(test) == 9000 and banks[0].n_features == 23
    ids = [i for b in banks for i in b.ids]
    assert len(set(ids)) == 21_000 and not set(ids) & set(test.ids)
    rates = [b.labels.mean() for b in banks]
    assert max(rates) - min(rates) < 0.03
    skewed, _ = dc.load_horizontal(3, skew=1.0, seed=3)
    assert sum(len(b) for b in skewed) == 21_000
    s_rates = [b.labels.mean() for b in skewed]
    assert max(s_rates) - min(s_rates) > 0.05
    assert all(0 < r < 1 for r in s_rates)


def test_load_party_data_default_credit():
    bank = load_party_data("default_credit", "bank", part="train")
    centre = load_party_data("default_credit", "credit_centre", part="test")
    assert len(bank) == 21_000 and bank.labels is not None
    assert len(centre) == 9_000 and centre.labels is None


def _table(n: int, *, label: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = uscc.generate(n, rng)
    df = pd.DataFrame({"uscc": ids, "x1": rng.normal(size=n), "x2": rng.integers(0, 5, n)})
    if label:
        df["default_12m"] = rng.integers(0, 2, n)
    return df


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_load_party_table_roundtrip(tmp_path, fmt):
    df = _table(50, label=True)
    path = tmp_path / f"bank_a.{fmt}"
    df.to_csv(path, index=False) if fmt == "csv" else df.to_parquet(path, index=False)
    pd_ = load_party_table(path, "bank")
    assert pd_.ids == df["uscc"].tolist()
    assert pd_.feature_names == ["x1", "x2"]
    assert np.allclose(pd_.features[:, 0], df["x1"])
    assert pd_.labels.tolist() == df["default_12m"].tolist()


def test_load_party_data_synthetic_dir_and_hash_split(tmp_path):
    _table(200, label=True, seed=1).to_csv(tmp_path / "bank_a.csv", index=False)
    c = _table(200, label=False, seed=1)
    c.to_parquet(tmp_path / "credit_centre.parquet", index=False)
    src = f"synthetic:{tmp_path}"
    b_tr = load_party_data(src, "bank", party="a", part="train")
    b_te = load_party_data(src, "bank", party="bank_a", part="test")
    c_te = load_party_data(src, "credit_centre", part="test")
    assert len(b_tr) + len(b_te) == 200 and 30 < len(b_te) < 90
    assert set(b_te.ids) == set(c_te.ids)  # same ids -> both parties agree on the split
    with pytest.raises(DataError):
        load_party_data(src, "bank")  # a bank must name its table
    with pytest.raises(DataError, match="bank_z"):
        load_party_data(src, "bank", party="z")


def _bad(tmp_path, df: pd.DataFrame, name="t.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def test_errors_name_file_row_column(tmp_path):
    df = _table(10, label=True)
    df.loc[3, "uscc"] = uscc.corrupt_check_character(df.loc[3, "uscc"])
    with pytest.raises(DataError, match=r"t\.csv.*row 4.*'uscc'.*check character") as ei:
        load_party_table(_bad(tmp_path, df), "bank")
    assert ei.value.row == 4 and ei.value.column == "uscc"

    df = _table(10, label=True)
    df.loc[7, "uscc"] = df.loc[2, "uscc"]
    with pytest.raises(DataError, match=r"row 8.*duplicate USCC.*first at row 3"):
        load_party_table(_bad(tmp_path, df), "bank")

    df = _table(10, label=True).astype({"x1": object})
    df.loc[5, "x1"] = "abc"
    with pytest.raises(DataError, match=r"row 6.*'x1'.*non-numeric value 'abc'"):
        load_party_table(_bad(tmp_path, df), "bank")

    df = _table(10, label=True)
    df.loc[0, "default_12m"] = 2
    with pytest.raises(DataError, match=r"row 1.*'default_12m'.*0 or 1"):
        load_party_table(_bad(tmp_path, df), "bank")

    with pytest.raises(DataError, match="missing label column"):
        load_party_table(_bad(tmp_path, _table(5, label=False)), "bank")
    with pytest.raises(DataError, match="missing id column"):
        load_party_table(_bad(tmp_path, _table(5, label=True).drop(columns="uscc")), "bank")
    with pytest.raises(DataError, match="must not hold the label"):
        load_party_table(_bad(tmp_path, _table(5, label=True)), "credit_centre")

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv.*empty file"):
        load_party_table(empty, "bank")
    header_only = tmp_path / "header.csv"
    header_only.write_text("uscc,x1,default_12m\n")
    with pytest.raises(DataError, match="no data rows"):
        load_party_table(header_only, "bank")


def test_missing_value_is_reported_not_dropped(tmp_path):
    df = _table(10, label=False)
    df.loc[4, "x2"] = np.nan
    with pytest.raises(DataError, match=r"row 5.*'x2'.*missing value"):
        load_party_table(_bad(tmp_path, df), "credit_centre")


def test_lowercase_ids_are_normalised(tmp_path):
    df = _table(5, label=False)
    df["uscc"] = " " + df["uscc"].str.lower()
    got = load_party_table(_bad(tmp_path, df), "credit_centre")
    assert all(uscc.is_valid(i) and i == i.upper() and i == i.strip() for i in got.ids)


# --- `fedcredit data check` -------------------------------------------------------------------


def _cli(*args):
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    return CliRunner().invoke(app, list(map(str, args)))


def test_check_good_file_exits_zero(tmp_path):
    p = _bad(tmp_path, _table(20, label=True))
    res = _cli("data", "check", p, "--role", "bank")
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and "20 rows" in res.output


def test_check_corrupted_uscc_exits_nonzero(tmp_path):
    df = _table(20, label=True)
    df.loc[6, "uscc"] = uscc.corrupt_check_character(df.loc[6, "uscc"])
    res = _cli("data", "check", _bad(tmp_path, df), "--role", "bank")
    assert res.exit_code == 1
    assert "row 7, column 'uscc'" in res.output and "check character" in res.output


def test_check_duplicate_id_exits_nonzero(tmp_path):
    df = _table(20, label=False)
    df.loc[11, "uscc"] = df.loc[4, "uscc"]
    res = _cli("data", "check", _bad(tmp_path, df), "--role", "credit_centre")
    assert res.exit_code == 1
    assert "row 12, column 'uscc'" in res.output and "duplicate" in res.output


def test_check_text_in_numeric_column_exits_nonzero(tmp_path):
    df = _table(20, label=True).astype({"x2": object})
    df.loc[2, "x2"] = "n/a?"
    res = _cli("data", "check", _bad(tmp_path, df), "--role", "bank")
    assert res.exit_code == 1
    assert "row 3, column 'x2'" in res.output and "non-numeric" in res.output


def test_check_reports_every_rejected_row_with_counts(tmp_path):
    df = _table(30, label=True).astype({"x1": object})
    for r in (1, 5, 9):
        df.loc[r, "x1"] = "bad"
    df.loc[20, "default_12m"] = 7
    df.loc[25, "uscc"] = "91XXXXXXXXXXXXXXXX"
    rejects = tmp_path / "rejects.csv"
    res = _cli("data", "check", _bad(tmp_path, df), "--role", "bank", "--rejects", rejects)
    assert res.exit_code == 1
    for r in (2, 6, 10):
        assert f"row {r}, column 'x1'" in res.output
    assert "row 21, column 'default_12m'" in res.output and "row 26, column 'uscc'" in res.output
    assert "5 problem(s) in 5 of 30 row(s)" in res.output
    assert "non_numeric" in res.output
    assert len(pd.read_csv(rejects)) == 5


def test_check_empty_and_missing_column(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    res = _cli("data", "check", p, "--role", "bank")
    assert res.exit_code == 1 and "empty file" in res.output
    res = _cli("data", "check", _bad(tmp_path, _table(5, label=False)), "--role", "bank")
    assert res.exit_code == 1 and "missing label column" in res.output
    res = _cli("data", "check", _bad(tmp_path, _table(5, label=False)), "--role", "nobody")
    assert res.exit_code == 2


def test_check_parquet(tmp_path):
    df = _table(10, label=True)
    df.loc[3, "default_12m"] = -1
    p = tmp_path / "b.parquet"
    df.to_parquet(p, index=False)
    res = _cli("data", "check", p, "--role", "bank")
    assert res.exit_code == 1 and "row 4, column 'default_12m'" in res.output
