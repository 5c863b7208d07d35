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


def schema_for(role: str) -> RoleSchema:
    """The schema of ``role`` ("bank" or "credit_centre"; "centre" is accepted as an alias)."""
    r = "credit_centre" if role in ("centre", "credit_center") else role
    try:
        return SCHEMAS[r]
    except KeyError:
        raise DataError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}") from None
