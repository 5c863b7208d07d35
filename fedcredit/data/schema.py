"""Table schemas per party role, declared once.

Every party table is keyed by a unified social credit code in column ``uscc``; a bank's table
also carries the label ``default_12m`` (0/1); every other column is a numeric feature. Keeping
all features numeric (categories as integer codes) lets every protocol use every column
without per-protocol encoding logic. The credit centre must not hold labels, so a centre table
that contains the label column is rejected rather than silently treated as a feature.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_COLUMN = "uscc"
LABEL_COLUMN = "default_12m"
ROLES = ("bank", "credit_centre")


@dataclass(frozen=True)
class RoleSchema:
    """What a table for one role must look like."""

    role: str
    id_column: str
    label_column: str | None  # required label column, or None when the role must not hold labels

    def feature_columns(self, columns: list[str]) -> list[str]:
        """All columns that are neither id nor label, in file order."""
        return [c for c in columns if c not in (self.id_column, LABEL_COLUMN)]


SCHEMAS: dict[str, RoleSchema] = {
    "bank": RoleSchema("bank", ID_COLUMN, LABEL_COLUMN),
    "credit_centre": RoleSchema("credit_centre", ID_COLUMN, None),
}


class DataError(ValueError):
    """Bad party data; the message names file, 1-based data row and column where known."""

    def __init__(self, message: str, *, file: str = "", row: int | None = None, column: str | None = None):
        self.file = file
        self.row = row
        self.column = column
        where = ", ".join(
            p for p in (file and f"file {file}", row is not None and f"row {row}", column and f"column {column!r}") if p
        )
        super().__init__(f"{where}: {message}" if where else message)


# The data category of each credit-centre column: what a consent token's ``cats`` must cover
# before that column may be used (fedcredit.consent.check). Declared here, next to the tables,
# so a new centre column cannot be used until someone says which authorisation covers it; a
# scenario may name categories of its own columns with ``[consent] column_categories``.
CENTRE_CATEGORIES = (
    "tax",
    "social_insurance",
    "provident_fund",
    "utilities",
    "court",
    "administrative_penalty",
    "registration",
    "credit_history",
)
COLUMN_CATEGORIES: dict[str, str] = {
    # synthetic SME tables (fedcredit.data.synth)
    "tax_grade_code": "tax",
    "tax_paid": "tax",
    "invoice_amount": "tax",
    "invoice_count": "tax",
    "si_headcount": "social_insurance",
    "si_arrears_months": "social_insurance",
    "provident_fund": "provident_fund",
    "water_arrears": "utilities",
    "power_arrears": "utilities",
    "gas_arrears": "utilities",
    "court_judgements": "court",
    "dishonest_debtor": "court",
    "consumption_restricted": "court",
    "admin_penalties": "administrative_penalty",
    "firm_age": "registration",
    "industry": "registration",
    "registered_capital": "registration",
    "district": "registration",
    # bundled UCI default_credit (fedcredit.data.default_credit): profile and repayment status
    "LIMIT_BAL": "credit_history",
    "SEX": "registration",
    "EDUCATION": "registration",
    "MARRIAGE": "registration",
    "AGE": "registration",
    **{f"PAY_{i}": "credit_history" for i in (0, 2, 3, 4, 5)},
}


def column_categories(columns: list[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Category of each centre column; a column without one is refused (DataError naming it)."""
    known = {**COLUMN_CATEGORIES, **(extra or {})}
    missing = [c for c in columns if c not in known]
    if missing:
        raise DataError(
            f"credit-centre column(s) {', '.join(repr(c) for c in missing)} declare no data category; "
            'add them to [consent] column_categories as "column=category"',
            column=missing[0],
        )
    return {c: known[c] for c in columns}


def schema_for(role: str) -> RoleSchema:
    """The schema of ``role`` ("bank" or "credit_centre"; "centre" is accepted as an alias)."""
    r = "credit_centre" if role in ("centre", "credit_center") else role
    try:
        return SCHEMAS[r]
    except KeyError:
        raise DataError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}") from None
