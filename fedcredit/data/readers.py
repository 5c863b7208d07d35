"""Reading real exports: encodings, delimiters, Excel, and which column is which.

Chinese banks' and public agencies' exports are commonly GB18030/GBK CSV or ``.xlsx`` with
Chinese headers (``统一社会信用代码``, ``是否违约``), sometimes ``;``-delimited. This module turns
such a file into a :class:`pandas.DataFrame` in the project's schema (id column ``uscc``, label
``default_12m``) and records *how* it read it, so every later error can say "read as encoding
gb18030, delimiter ';'" -- the usual cause of a "missing column" is a wrong guess, and the user
needs to see the guess to override it.

How the encoding is chosen (unless :attr:`ReadOptions.encoding` says): UTF-8 (with or without
BOM) if the bytes decode strictly; otherwise ``charset_normalizer``'s best guess, with the
Chinese family (GB2312, GBK, HZ) widened to GB18030 (their superset); otherwise GB18030 -- the
fallback the Chinese national standard makes the safe default for these exports.
The delimiter is sniffed (``csv.Sniffer``) among ``, ; TAB |`` on the first 64 KiB unless given.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fedcredit.data.schema import ID_COLUMN, LABEL_COLUMN, DataError

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
PARQUET_SUFFIXES = (".parquet", ".pq")
DELIMITERS = ",;\t|"
FALLBACK_ENCODING = "gb18030"
_CHINESE = {"gb2312", "gbk", "gb18030", "hz", "hz_gb_2312", "cp936"}
SNIFF_BYTES = 64 * 1024
DEFAULT_MAX_LEVELS = 50
# Cell texts every reader treats as missing (pandas' defaults plus common Chinese exports).
DEFAULT_MISSING = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "无", "空", "-")


@dataclass(frozen=True)
class ReadOptions:
    """How to read one party's file; every field is optional (defaults detect and use the schema names).

    Built from a scenario's ``[parties.NAME]`` table or ``fedcredit data check`` flags with
    :meth:`from_mapping`: ``id_column``, ``label_column``, ``rename`` (``{old: new}``),
    ``encoding``, ``delimiter``, ``sheet``, ``categorical`` (columns kept as text),
    ``missing_values`` (extra sentinels read as missing), ``max_levels``, ``allow_missing``.
    """

    id_column: str = ID_COLUMN
    label_column: str = LABEL_COLUMN
    rename: tuple[tuple[str, str], ...] = ()
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | int = 0
    categorical: tuple[str, ...] = ()
    missing_values: tuple[str, ...] = ()
    max_levels: int = DEFAULT_MAX_LEVELS
    allow_missing: bool = False  # empty cells in features: an error unless the consumer handles them

    KEYS = (
        "id_column",
        "label_column",
        "rename",
        "encoding",
        "delimiter",
        "sheet",
        "categorical",
        "missing_values",
        "max_levels",
        "allow_missing",
    )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "read options") -> ReadOptions:
        """Options from a TOML table / dict; unknown keys are ignored (party tables hold other keys)."""
        kw: dict[str, Any] = {}
        for key in cls.KEYS:
            if key not in raw or raw[key] is None:
                continue
            v = raw[key]
            if key == "rename":
                if not isinstance(v, Mapping):
                    raise DataError(f"{where}: 'rename' must be a table {{old = new}}, got {type(v).__name__}")
                kw[key] = tuple((str(a), str(b)) for a, b in v.items())
            elif key in ("categorical", "missing_values"):
                if isinstance(v, str) or not isinstance(v, (list, tuple)):
                    raise DataError(f"{where}: {key!r} must be a list of strings")
                kw[key] = tuple(str(x) for x in v)
            elif key == "max_levels":
                if not isinstance(v, int) or v < 2:
                    raise DataError(f"{where}: 'max_levels' must be an integer >= 2, got {v!r}")
                kw[key] = v
            elif key == "allow_missing":
                kw[key] = bool(v)
            elif key == "sheet":
                kw[key] = v if isinstance(v, int) else str(v)
            else:
                kw[key] = str(v)
        return cls(**kw)

    def key(self) -> tuple:
        """Hashable form for caches."""
        return tuple(getattr(self, k) for k in self.KEYS)


@dataclass
class ReadInfo:
    """What the reader detected: quoted in every error about the file."""

    format: str
    encoding: str | None = None
    delimiter: str | None = None
    renamed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        if self.format == "csv":
            return f"read as CSV, encoding {self.encoding}, delimiter {self.delimiter!r}"
        return f"read as {self.format}"


def detect_encoding(raw: bytes) -> str:
    """UTF-8 if it decodes strictly, else charset_normalizer's guess (Chinese -> GB18030), else GB18030."""
    try:
        raw.decode("utf-8")
        return "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(raw).best()
    except (ImportError, ValueError, LookupError):  # detector trouble: the fallback still reads
        best = None
    if best is not None and best.encoding:
        enc = best.encoding.lower().replace("-", "_")
        if enc in _CHINESE:
            return FALLBACK_ENCODING
        try:
            raw.decode(best.encoding)
            # A single-byte guess that also decodes as GB18030 is usually Chinese text misread.
            raw.decode(FALLBACK_ENCODING)
            return FALLBACK_ENCODING if any(ord(ch) > 0x2E80 for ch in raw.decode(FALLBACK_ENCODING)) else enc
        except UnicodeDecodeError:
            return enc
    return FALLBACK_ENCODING


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``, ; TAB |`` that gives a consistent column count on the first lines."""
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def read_raw(path: str | Path, opts: ReadOptions | None = None) -> tuple[pd.DataFrame, ReadInfo]:
    """The file as text-typed columns (nothing coerced yet) and how it was read.

    Every column is read as text so the validator, not pandas, decides what is numeric, what is
    missing and what is a category; ids keep their leading zeros.
    """
    opts = opts or ReadOptions()
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", file=str(p))
    na = list(DEFAULT_MISSING) + list(opts.missing_values)
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"cannot read Parquet: {exc}", file=str(p)) from exc
        if opts.missing_values:
            df = df.replace(list(opts.missing_values), float("nan"))
        info = ReadInfo("Parquet")
    elif suffix in EXCEL_SUFFIXES:
        try:
            df = pd.read_excel(
                p, sheet_name=opts.sheet, dtype=str, na_values=na, keep_default_na=False, engine="openpyxl"
            )
        except ImportError as exc:
            raise DataError(f"reading Excel needs openpyxl: {exc}", file=str(p)) from exc
        except Exception as exc:  # openpyxl/zipfile raise many types for corrupt workbooks
            raise DataError(f"cannot read Excel sheet {opts.sheet!r}: {exc}", file=str(p)) from exc
        info = ReadInfo("Excel (openpyxl)")
    else:
        raw = p.read_bytes()
        if suffix.endswith(".gz"):
            import gzip

            raw = gzip.decompress(raw)
        enc = opts.encoding or detect_encoding(raw[: SNIFF_BYTES * 4])
        try:
            text = raw.decode(enc)
        except (UnicodeDecodeError, LookupError) as exc:
            how = "given" if opts.encoding else "detected"
            raise DataError(
                f"cannot decode as {how} encoding {enc!r}: {exc}; set the party's `encoding` (e.g. gb18030, utf-8)",
                file=str(p),
            ) from None
        text = text.lstrip("\ufeff")
        delim = opts.delimiter or sniff_delimiter(text[:SNIFF_BYTES])
        info = ReadInfo("csv", encoding=enc, delimiter=delim)
        if not text.strip():
            raise DataError("empty file: no header and no data rows", file=str(p))
        try:
            df = pd.read_csv(
                io.StringIO(text),
                sep=delim,
                dtype=str,
                na_values=na,
                keep_default_na=False,
                skipinitialspace=True,
            )
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no data rows", file=str(p)) from None
        except pd.errors.ParserError as exc:
            raise DataError(f"cannot parse CSV ({info.describe()}): {exc}", file=str(p)) from exc
    df.columns = [str(c).strip() for c in df.columns]
    renames = dict(opts.rename)
    if opts.id_column != ID_COLUMN:
        renames[opts.id_column] = ID_COLUMN
    if opts.label_column != LABEL_COLUMN:
        renames[opts.label_column] = LABEL_COLUMN
    for old in renames:
        if old not in df.columns:
            raise DataError(
                f"column {old!r} named in the read options is not in the file ({info.describe()}; "
                f"columns: {list(df.columns)})",
                file=str(p),
                column=old,
            )
    if renames:
        df = df.rename(columns=renames)
        info.renamed = renames
    df.attrs["read_info"] = info.describe()
    return df, info
