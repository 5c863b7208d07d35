"""Consent registry: which enterprise authorised which bank to use its public credit data, for what.

Regulation binds every use of public credit data to a purpose and to the enterprise's
authorisation. The bank holds these records (it collected them when the enterprise applied), so
the registry lives on the bank's node: PSI input and inference queries are filtered through it
*before* any id is hashed or sent, and only the *counts* of refusals (never the ids) go into the
run ledger's ``consent_check`` record.

CSV format (UTF-8, header required, one consent per row)::

    uscc,bank,purpose,scope,valid_from,valid_until,revoked_at
    91330100MA27XL4G2Q,bank-a,credit_risk_modelling,*,2024-01-01,2026-12-31,
    91330100MA27XL4G2Q,bank-a,loan_decision,tax;invoice,2024-01-01,2026-12-31,2025-03-01

``scope`` lists data categories separated by ``;`` (``*`` = all). ``valid_until`` is inclusive;
a consent stops counting on its ``revoked_at`` date.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedcredit.data import uscc as uscc_mod

PURPOSES = ("credit_risk_modelling", "loan_decision")
REASONS = ("no_consent", "expired", "not_yet_valid", "revoked", "wrong_purpose", "out_of_scope")
ALL_CATEGORIES = "*"
COLUMNS = ("uscc", "bank", "purpose", "scope", "valid_from", "valid_until", "revoked_at")
_OPTIONAL = ("revoked_at",)
_CATEGORY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_REPORTED = 20


class ConsentError(ValueError):
    """Malformed consent data; the message names the file, line and column."""


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class ConsentRecord:
    """One authorisation: enterprise ``uscc`` lets ``bank`` use its data for ``purpose``."""

    uscc: str
    bank: str
    purpose: str
    scope: frozenset[str]
    valid_from: dt.date
    valid_until: dt.date
    revoked_at: dt.date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "uscc", uscc_mod.validate(self.uscc))
        if not isinstance(self.bank, str) or not self.bank.strip():
            raise ConsentError("bank must be a non-empty name")
        object.__setattr__(self, "bank", self.bank.strip())
        if self.purpose not in PURPOSES:
            raise ConsentError(f"unknown purpose {self.purpose!r} (expected one of {', '.join(PURPOSES)})")
        raw = self.scope.split(";") if isinstance(self.scope, str) else self.scope
        scope = frozenset(c.strip() for c in raw if c.strip())
        if not scope:
            raise ConsentError("scope is empty (use '*' for all data categories)")
        bad = [c for c in scope if c != ALL_CATEGORIES and not _CATEGORY_RE.fullmatch(c)]
        if bad:
            raise ConsentError(f"invalid data category {bad[0]!r} in scope (lower-case words, or '*')")
        object.__setattr__(self, "scope", scope)
        if self.valid_until < self.valid_from:
            raise ConsentError(f"valid_until {self.valid_until} is before valid_from {self.valid_from}")

    def refusal(self, at: dt.date, category: str | None = None) -> str | None:
        """Why this record does not authorise use on day ``at`` (None if it does). Purpose not checked."""
        if self.revoked_at is not None and at >= self.revoked_at:
            return "revoked"
        if at < self.valid_from:
            return "not_yet_valid"
        if at > self.valid_until:
            return "expired"
        if category is not None and ALL_CATEGORIES not in self.scope and category not in self.scope:
            return "out_of_scope"
        return None


@dataclass
class ConsentFilterResult:
    """Outcome of filtering a list of enterprise ids.

    ``allowed`` keeps the input order and spelling. ``refused_ids`` maps each refused id to its
    reason: it stays on the bank's node (never log or send it). :meth:`ledger_payload` gives what
    may go into the ledger: counts only.
    """

    bank: str
    purpose: str
    at: dt.date
    category: str | None
    allowed: list[str]
    refused: dict[str, int]
    refused_ids: dict[str, str] = field(repr=False)
    mask: list[bool] = field(repr=False)

    @property
    def checked(self) -> int:
        return len(self.mask)

    def ledger_payload(self) -> dict[str, Any]:
        return {
            "bank": self.bank,
            "purpose": self.purpose,
            "at": self.at.isoformat(),
            "category": self.category,
            "checked": self.checked,
            "allowed": len(self.allowed),
            "refused": dict(sorted(self.refused.items())),
        }


class ConsentRegistry:
    """All consent records a bank holds, indexed by (enterprise, bank)."""

    def __init__(self, records: Iterable[ConsentRecord] = ()) -> None:
        self._by_key: dict[tuple[str, str], list[ConsentRecord]] = {}
        for rec in records:
            self.add(rec)

    def add(self, rec: ConsentRecord) -> None:
        self._by_key.setdefault((rec.uscc, rec.bank), []).append(rec)

    def __iter__(self) -> Iterator[ConsentRecord]:
        for recs in self._by_key.values():
            yield from recs

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    # -- queries ---------------------------------------------------------------------------------

    def check(
        self, uscc: str, bank: str, purpose: str, at: dt.date | dt.datetime, category: str | None = None
    ) -> str | None:
        """``None`` if ``bank`` may use ``uscc``'s data for ``purpose`` on ``at``, else the reason.

        With several records, any one that authorises suffices; otherwise the reason comes from the
        most recent record for that purpose (latest ``valid_from``), e.g. a re-granted consent
        overrides an older revoked one, and a revoked renewal explains the refusal.
        """
        if purpose not in PURPOSES:
            raise ConsentError(f"unknown purpose {purpose!r} (expected one of {', '.join(PURPOSES)})")
        recs = self._by_key.get((uscc_mod.normalise(uscc), bank)) if isinstance(uscc, str) else None
        if not recs:
            return "no_consent"
        day = _as_date(at)
        matching = [r for r in recs if r.purpose == purpose]
        if not matching:
            return "wrong_purpose"
        reasons = [(r.valid_from, r.valid_until, r.refusal(day, category)) for r in matching]
        if any(reason is None for *_, reason in reasons):
            return None
        return max(reasons)[2]

    def filter(
        self, ids: Iterable[str], bank: str, purpose: str, at: dt.date | dt.datetime, category: str | None = None
    ) -> ConsentFilterResult:
        """Split ``ids`` into those ``bank`` may use for ``purpose`` on ``at`` and refusal counts."""
        allowed: list[str] = []
        mask: list[bool] = []
        refused_ids: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for i in ids:
            reason = self.check(i, bank, purpose, at, category)
            mask.append(reason is None)
            if reason is None:
                allowed.append(i)
            else:
                counts[reason] += 1
                refused_ids[i] = reason
        return ConsentFilterResult(bank, purpose, _as_date(at), category, allowed, dict(counts), refused_ids, mask)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def grant_all(
        cls,
        ids: Iterable[str],
        bank: str,
        purpose: str | Iterable[str] = PURPOSES,
        *,
        valid_from: dt.date = dt.date(2000, 1, 1),
        valid_until: dt.date = dt.date(2099, 12, 31),
        scope: Iterable[str] = (ALL_CATEGORIES,),
    ) -> ConsentRegistry:
        """Registry where every id consents (for bundled/synthetic-data demos, which have no real
        authorisations). Invalid ids raise, so a demo cannot silently skip the consent path."""
        purposes = (purpose,) if isinstance(purpose, str) else tuple(purpose)
        scope_set = frozenset(scope)
        return cls(ConsentRecord(u, bank, p, scope_set, valid_from, valid_until) for u in ids for p in purposes)

    def revoke(self, uscc: str, bank: str, on: dt.date, purpose: str | None = None) -> int:
        """Mark matching consents revoked from ``on``; returns how many records changed."""
        key = (uscc_mod.normalise(uscc), bank)
        changed = 0
        recs = self._by_key.get(key, [])
        for k, rec in enumerate(recs):
            if purpose is None or rec.purpose == purpose:
                recs[k] = replace(rec, revoked_at=on)
                changed += 1
        return changed

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> ConsentRegistry:
        """Load a consent CSV; raises :class:`ConsentError` listing each bad line and column."""
        p = Path(path)
        if not p.is_file():
            raise ConsentError(f"consent file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConsentError(
                f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the CSV as UTF-8"
            ) from None
        reader = csv.DictReader(text.splitlines(), restkey="__extra__", restval=None)
        header = reader.fieldnames
        if not header:
            raise ConsentError(f"{p}: empty file, expected a header line: {','.join(COLUMNS)}")
        header = [h.strip() for h in header]
        reader.fieldnames = header
        missing = [c for c in COLUMNS if c not in header and c not in _OPTIONAL]
        unknown = [c for c in header if c not in COLUMNS]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown column(s) {', '.join(repr(u) for u in unknown)}")
            raise ConsentError(f"{p} line 1 (header): {'; '.join(parts)}; expected {','.join(COLUMNS)}")
        registry = cls()
        errors: list[str] = []
        for row in reader:
            line = reader.line_num
            try:
                registry.add(_parse_row(row))
            except _RowError as exc:
                errors.append(f"{p} line {line}, column {exc.column!r}: {exc}")
            except ConsentError as exc:
                errors.append(f"{p} line {line}: {exc}")
            if len(errors) >= _MAX_REPORTED:
                errors.append("(further errors not shown)")
                break
        if errors:
            raise ConsentError(f"{len(errors)} malformed consent row(s):\n  " + "\n  ".join(errors))
        return registry

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write all records in the format :meth:`from_csv` reads (sorted, so diffs are stable)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        rows = sorted(self, key=lambda r: (r.uscc, r.bank, r.purpose, r.valid_from, r.valid_until))
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow(
                    [
                        r.uscc,
                        r.bank,
                        r.purpose,
                        ";".join(sorted(r.scope)),
                        r.valid_from.isoformat(),
                        r.valid_until.isoformat(),
                        r.revoked_at.isoformat() if r.revoked_at else "",
                    ]
                )
        return p


class _RowError(ConsentError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _parse_date(row: dict[str, Any], column: str, *, optional: bool = False) -> dt.date | None:
    raw = (row.get(column) or "").strip()
    if not raw:
        if optional:
            return None
        raise _RowError(column, "empty, expected a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _RowError(column, f"{raw!r} is not a date YYYY-MM-DD") from None


def _parse_row(row: dict[str, Any]) -> ConsentRecord:
    if row.get("__extra__"):
        raise ConsentError(f"{len(row['__extra__'])} more field(s) than the header has columns")
    for col in COLUMNS:
        if col not in _OPTIONAL and row.get(col) is None:
            raise _RowError(col, "missing (row has fewer fields than the header)")
    code = row["uscc"].strip()
    err = uscc_mod.validation_error(code)
    if err is not None:
        raise _RowError("uscc", f"invalid USCC {code!r}: {err}")
    bank = row["bank"].strip()
    if not bank:
        raise _RowError("bank", "empty bank name")
    purpose = row["purpose"].strip()
    if purpose not in PURPOSES:
        raise _RowError("purpose", f"unknown purpose {purpose!r} (expected one of {', '.join(PURPOSES)})")
    scope = frozenset(s.strip() for s in row["scope"].split(";") if s.strip())
    bad = sorted(c for c in scope if c != ALL_CATEGORIES and not _CATEGORY_RE.fullmatch(c))
    if not scope or bad:
        raise _RowError(
            "scope",
            f"invalid data category {bad[0]!r}" if bad else "empty (list categories separated by ';', or '*' for all)",
        )
    valid_from = _parse_date(row, "valid_from")
    valid_until = _parse_date(row, "valid_until")
    revoked_at = _parse_date(row, "revoked_at", optional=True)
    assert valid_from is not None and valid_until is not None
    if valid_until < valid_from:
        raise _RowError("valid_until", f"{valid_until} is before valid_from {valid_from}")
    return ConsentRecord(code, bank, purpose, scope, valid_from, valid_until, revoked_at)
