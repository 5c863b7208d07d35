"""Real exports in (issue 17): GB18030/`;` CSV and .xlsx with Chinese headers, missing values, categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.data import uscc
from fedcredit.data.loaders import load_party_data, load_party_table
from fedcredit.data.readers import ReadOptions, detect_encoding, sniff_delimiter
from fedcredit.data.schema import DataError

ID_ZH = "统一社会信用代码"
LABEL_ZH = "是否违约"


def _ids(n: int, seed: int = 3) -> list[str]:
    return [str(u) for u in uscc.generate(n, np.random.default_rng(seed))]


def _bank_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            ID_ZH: _ids(n),
            "贷款余额": rng.normal(size=n).round(4),
            "行业门类": rng.choice(["C", "F", "G", "I"], size=n),
            LABEL_ZH: rng.integers(0, 2, size=n),
        }
    )


def test_gb18030_semicolon_csv_with_chinese_headers_end_to_end(tmp_path):
    df = _bank_frame()
    p = tmp_path / "银行导出.csv"
    p.write_bytes(df.to_csv(index=False, sep=";").encode("gb18030"))
    # plain utf-8 decoding of these bytes fails: the file really is GB18030
    with pytest.raises(UnicodeDecodeError):
        p.read_bytes().decode("utf-8")
    assert detect_encoding(p.read_bytes()) == "gb18030"
    opts = ReadOptions(id_column=ID_ZH, label_column=LABEL_ZH, categorical=("行业门类",))
    data = load_party_table(p, "bank", opts)
    assert data.ids == [u.upper() for u in df[ID_ZH]]
    assert data.feature_names == ["贷款余额", "行业门类"]
    assert np.allclose(data.features[:, 0], df["贷款余额"])
    assert data.categorical == {"行业门类": ["C", "F", "G", "I"]}
    levels = np.array(data.categorical["行业门类"])[data.features[:, 1].astype(int)]
    assert list(levels) == list(df["行业门类"])
    assert np.array_equal(data.labels, df[LABEL_ZH].to_numpy())


def test_xlsx_with_chinese_headers_end_to_end(tmp_path):
    pytest.importorskip("openpyxl")
    df = _bank_frame()
    p = tmp_path / "bank.xlsx"
    df.to_excel(p, index=False)
    opts = ReadOptions.from_mapping(
        {"id_column": ID_ZH, "label_column": LABEL_ZH, "categorical": ["行业门类"], "rename": {"贷款余额": "loan"}}
    )
    data = load_party_data(str(p), "bank", opts=opts)
    assert data.feature_names == ["loan", "行业门类"]
    assert len(data) == 40 and np.array_equal(data.labels, df[LABEL_ZH].to_numpy())


def test_missing_id_column_error_names_encoding_and_delimiter(tmp_path):
    p = tmp_path / "bank.csv"
    p.write_bytes(_bank_frame().to_csv(index=False, sep=";").encode("gb18030"))
    with pytest.raises(DataError) as exc:
        load_party_table(p, "bank")
    msg = str(exc.value)
    assert "missing id column 'uscc'" in msg and "gb18030" in msg and "delimiter ';'" in msg
    assert "id_column" in msg
    with pytest.raises(DataError, match=r"column '不存在'.*gb18030"):
        load_party_table(p, "bank", ReadOptions(id_column="不存在"))


def test_explicit_encoding_override_and_wrong_one(tmp_path):
    p = tmp_path / "c.csv"
    df = _bank_frame().drop(columns=[LABEL_ZH, "行业门类"])
    p.write_bytes(df.to_csv(index=False).encode("gb18030"))
    data = load_party_table(p, "credit_centre", ReadOptions(id_column=ID_ZH, encoding="gb18030"))
    assert len(data) == 40
    with pytest.raises(DataError, match=r"cannot decode as given encoding 'utf-8'"):
        load_party_table(p, "credit_centre", ReadOptions(id_column=ID_ZH, encoding="utf-8"))


def test_sniff_delimiters():
    assert sniff_delimiter("a;b;c\n1;2;3\n") == ";"
    assert sniff_delimiter("a\tb\n1\t2\n") == "\t"
    assert sniff_delimiter("a,b\n1,2\n") == ","


def _centre(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.3] = np.nan
    return pd.DataFrame({"uscc": _ids(n, 9), "tax": x, "grade": rng.choice(["A", "B", "M", "C", "D"], n)})


def test_missing_values_and_sentinels_allowed_when_asked(tmp_path):
    df = _centre()
    df["fund"] = np.where(np.arange(60) % 4 == 0, "-999", "1.5")
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"column 'tax'.*missing value"):
        load_party_table(p, "credit_centre", ReadOptions(categorical=("grade",)))
    opts = ReadOptions(categorical=("grade",), allow_missing=True, missing_values=("-999",))
    data = load_party_table(p, "credit_centre", opts)
    assert np.isnan(data.features[:, 0]).sum() == df["tax"].isna().sum()
    assert np.isnan(data.features[:, 2]).sum() == 15


def test_bad_inputs_name_file_and_column(tmp_path):
    df = _centre()
    df["empty"] = np.nan
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    opts = ReadOptions(categorical=("grade",), allow_missing=True)
    with pytest.raises(DataError, match=r"c\.csv.*column 'empty'.*every value of the column is missing"):
        load_party_table(p, "credit_centre", opts)
    df = _centre()
    p2 = tmp_path / "levels.csv"
    df.to_csv(p2, index=False)
    with pytest.raises(DataError, match=r"levels\.csv.*column 'grade'.*5 levels, more than the limit 3"):
        load_party_table(p2, "credit_centre", ReadOptions(categorical=("grade",), max_levels=3, allow_missing=True))
    df["是否违约_衍生"] = 0
    p3 = tmp_path / "leak.csv"
    df.to_csv(p3, index=False)
    with pytest.raises(DataError, match=r"leak\.csv.*column '是否违约_衍生'.*label-derived"):
        load_party_table(p3, "credit_centre", ReadOptions(categorical=("grade",), allow_missing=True))


def _cli(*args):
    from typer.testing import CliRunner

    from fedcredit.cli.main import app

    return CliRunner().invoke(app, list(map(str, args)))


def test_data_check_reports_missing_rate_and_levels(tmp_path):
    df = _centre()
    p = tmp_path / "c.csv"
    p.write_bytes(df.to_csv(index=False, sep=";").encode("gb18030"))
    res = _cli("data", "check", p, "--role", "credit_centre", "--categorical", "grade")
    assert res.exit_code == 0, res.output
    rate = df["tax"].isna().mean()
    assert "missing rate per column" in res.output and f"{rate:7.2%}" in res.output
    assert "grade" in res.output and " 5" in res.output and "delimiter ';'" in res.output
    res = _cli("data", "check", p, "--role", "credit_centre", "--categorical", "grade", "--max-levels", "4")
    assert res.exit_code == 1 and "column 'grade'" in res.output and "more than the limit 4" in res.output
    res = _cli("data", "check", p, "--role", "credit_centre", "--strict")
    assert res.exit_code == 1 and "missing value" in res.output and "non-numeric" in res.output


def test_data_check_sidecar_schema(tmp_path):
    df = _bank_frame()
    p = tmp_path / "b.csv"
    p.write_bytes(df.to_csv(index=False).encode("gb18030"))
    schema = tmp_path / "b.toml"
    schema.write_text(
        f'[data]\nid_column = "{ID_ZH}"\nlabel_column = "{LABEL_ZH}"\ncategorical = ["行业门类"]\n', encoding="utf-8"
    )
    res = _cli("data", "check", p, "--role", "bank", "--schema", schema)
    assert res.exit_code == 0, res.output
    assert "40 rows, 2 feature columns" in res.output
