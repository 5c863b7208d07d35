"""Read and validate a party table, reporting every rejected row.

Nothing is silently dropped: :func:`check_table` returns every problem with its 1-based data
row (row 1 is the first row under a CSV header, i.e. file line 2) and column, so
``fedcredit data check`` can show what is wrong and loaders can refuse the file with an error
that points at the first offending cell. All checks are vectorised (numpy/pandas) so a million
rows validate in seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fedcredit.data import uscc
from fedcredit.data.schema import LABEL_COLUMN, DataError, RoleSchema, schema_for

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Issue:
    """One problem: ``row`` is the 1-based data row (None for file-level problems)."""

    kind: str
    message: str
    row: int | None = None
    column: str | None = None

    def describe(self, file: str = "") -> str:
        return str(DataError(self.message, file=file, row=self.row, column=self.column))


@dataclass
class ValidationReport:
    """Outcome of checking one table."""

    file: str
    role: str
    n_rows: int = 0
    issues: list[Issue] = field(default_factory=list)
    frame: pd.DataFrame | None = None  # the table with ids normalised (None if unreadable)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def rejected_rows(self) -> list[int]:
        """Sorted 1-based rows with at least one problem."""
        return sorted({i.row for i in self.issues if i.row is not None})

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of problems per (kind, column)."""
        return dict(Counter((i.kind, i.column or "-") for i in self.issues))

    def error(self) -> DataError:
        """A :class:`DataError` for the first problem, mentioning how many more there are."""
        first = self.issues[0]
        more = len(self.issues) - 1
        msg = first.message
        if more:
            msg += (
                f" (and {more} more problem(s) in {len(self.rejected_rows)} row(s); "
                f"run `fedcredit data check {self.file} --role {self.role}` for all)"
            )
        return DataError(msg, file=self.file, row=first.row, column=first.column)

    def raise_if_bad(self) -> None:
        if self.issues:
            raise self.error()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV (optionally gzip-compressed) or Parquet with the id column kept as text."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", file=str(p))
    if p.suffix.lower() in PARQUET_SUFFIXES:
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"cannot read Parquet: {exc}", file=str(p)) from exc
    else:
        try:
            df = pd.read_csv(p, dtype={"uscc": str}, skipinitialspace=True, low_memory=False)
        except pd.errors.EmptyDataError:
            raise DataError("empty file: no header and no data rows", file=str(p)) from None
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot parse CSV: {exc}", file=str(p)) from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _check_ids(df: pd.DataFrame, col: str, issues: list[Issue]) -> None:
    raw = df[col]
    missing = raw.isna().to_numpy()
    for r in np.nonzero(missing)[0]:
        issues.append(Issue("missing_id", "missing USCC", int(r) + 1, col))
    values = raw.to_numpy(dtype=object)
    present = np.nonzero(~missing)[0]
    as_text = np.array([v if isinstance(v, str) else str(v) for v in values[present]], dtype=object)
    valid = uscc.valid_mask(as_text)
    for r, code in zip(present[~valid], as_text[~valid]):
        issues.append(Issue("invalid_id", f"invalid USCC {code!r}: {uscc.validation_error(code)}", int(r) + 1, col))
    norm = pd.Series(values, dtype=object)
    norm.iloc[present] = np.char.upper(np.char.strip(as_text.astype(str))) if present.size else []
    df[col] = norm.to_numpy()
    checkable = pd.Series(np.where(missing, None, df[col].to_numpy()), dtype=object)
    dup = checkable.duplicated(keep="first").to_numpy() & ~missing
    if dup.any():
        first_row: dict[str, int] = {}
        for i, code in enumerate(checkable.to_numpy()):
            if code is not None and code not in first_row:
                first_row[code] = i + 1
        for r in np.nonzero(dup)[0]:
            code = checkable.iat[r]
            issues.append(
                Issue("duplicate_id", f"duplicate USCC {code!r} (first at row {first_row[code]})", int(r) + 1, col)
            )


def _check_numeric(df: pd.DataFrame, col: str, issues: list[Issue], *, label: bool) -> None:
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(np.int8)
    if pd.api.types.is_numeric_dtype(s):
        num = s.astype(np.float64)
        bad_text = np.zeros(len(s), dtype=bool)
    else:
        num = pd.to_numeric(s, errors="coerce").astype(np.float64)
        bad_text = (num.isna() & s.notna()).to_numpy()
        for r in np.nonzero(bad_text)[0]:
            issues.append(Issue("non_numeric", f"non-numeric value {s.iat[r]!r}", int(r) + 1, col))
    arr = num.to_numpy()
    missing = np.isnan(arr) & ~bad_text
    for r in np.nonzero(missing)[0]:
        issues.append(Issue("missing_value", "missing value", int(r) + 1, col))
    inf = np.isinf(arr)
    for r in np.nonzero(inf)[0]:
        issues.append(Issue("non_finite", f"non-finite value {arr[r]!r}", int(r) + 1, col))
    if label:
        finite = np.isfinite(arr)
        bad_label = finite & (arr != 0) & (arr != 1)
        for r in np.nonzero(bad_label)[0]:
            issues.append(Issue("bad_label", f"label must be 0 or 1, got {s.iat[r]!r}", int(r) + 1, col))
    df[col] = arr


def check_frame(df: pd.DataFrame, role: str, file: str = "<table>") -> ValidationReport:
    """Validate ``df`` against the schema of ``role``; ``df`` is normalised in place."""
    schema: RoleSchema = schema_for(role)
    rep = ValidationReport(file=file, role=schema.role, n_rows=len(df), frame=df)
    issues = rep.issues
    if df.shape[1] == 0:
        issues.append(Issue("empty", "empty file: no columns"))
        return rep
    if schema.id_column not in df.columns:
        issues.append(
            Issue(
                "missing_column",
                f"missing id column {schema.id_column!r} (columns: {list(df.columns)})",
                column=schema.id_column,
            )
        )
    if schema.label_column and schema.label_column not in df.columns:
        issues.append(
            Issue("missing_column", f"missing label column {schema.label_column!r}", column=schema.label_column)
        )
    if not schema.label_column and LABEL_COLUMN in df.columns:
        issues.append(
            Issue("forbidden_column", f"a {schema.role} table must not hold the label column", column=LABEL_COLUMN)
        )
    dup_cols = [c for c, k in Counter(df.columns).items() if k > 1]
    for c in dup_cols:
        issues.append(Issue("duplicate_column", "column name appears more than once", column=c))
    if len(df) == 0:
        issues.append(Issue("empty", "empty file: no data rows"))
    if issues:
        return rep
    _check_ids(df, schema.id_column, issues)
    if schema.label_column:
        _check_numeric(df, schema.label_column, issues, label=True)
    for col in schema.feature_columns(list(df.columns)):
        _check_numeric(df, col, issues, label=False)
    issues.sort(key=lambda i: (i.row or 0, list(df.columns).index(i.column) if i.column in df.columns else -1))
    return rep


def check_table(path: str | Path, role: str) -> ValidationReport:
    """Read ``path`` and validate it; unreadable files become a file-level issue, not an exception."""
    try:
        df = read_table(path)
    except DataError as exc:
        rep = ValidationReport(file=str(path), role=schema_for(role).role)
        msg = str(exc).split(": ", 1)[1] if str(exc).startswith("file ") else str(exc)
        rep.issues.append(Issue("unreadable", msg))
        return rep
    return check_frame(df, role, str(path))
