"""Input hygiene at the PSI party boundary, before any cryptography.

Ids are normalised (strip, upper case), invalid ones rejected and counted (``strict=True``
raises instead), duplicates counted and dropped (first row kept), and ids refused by
``allowed`` (the consent filter: a set or a predicate) counted. Working memory is bounded by
:data:`PREPARE_BLOCK`; what stays is a fixed-width byte array of the kept ids plus their row
numbers (~26 bytes per id for USCCs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

import numpy as np

from protocols.psi.ids import uscc_error, uscc_mask

log = logging.getLogger(__name__)

PREPARE_BLOCK = 65536  # ids normalised/validated at a time: bounds working memory
MAX_ITEMS = 2**31 - 1  # ids one party may put in (and the largest count a message may announce)
_EMPTY_ROWS = np.zeros(0, dtype=np.int64)
Allowed = Callable[[str], bool] | Container[str]
Validator = Callable[[str], bool]


class InvalidIdError(ValueError):
    """Raised in ``strict`` mode for the first invalid id (names party, row and reason)."""


@dataclass
class PreparedIds:
    """The ids a party puts into PSI and where they came from.

    ``ids`` are the kept normalised ids (sorted, fixed-width bytes), ``rows[i]`` the input row
    of ``ids[i]``; ``invalid_rows`` and ``duplicate_rows`` are ascending input rows.
    """

    ids: np.ndarray
    rows: np.ndarray
    invalid_rows: np.ndarray
    duplicate_rows: np.ndarray
    stats: dict[str, int]


def _valid_in_block(norm: list[str | None], validator: Validator | None) -> tuple[np.ndarray, np.ndarray]:
    """(validity mask, kept ids as fixed-width bytes) of one block of normalised ids."""
    if validator is None:
        ok = uscc_mask(norm)
    else:
        ok = np.fromiter(
            (c is not None and "\x00" not in c and bool(validator(c)) for c in norm), dtype=bool, count=len(norm)
        )
    valid = [c.encode() for c, good in zip(norm, ok.tolist()) if good and c is not None]
    width = 18 if validator is None else max(map(len, valid), default=1)
    return ok, np.array(valid, dtype=f"S{width}")


def _report_invalid(who: str, value: object, row: int, norm: str | None, custom: bool, strict: bool) -> None:
    """Name the first invalid id (row and reason); raise in strict mode."""
    why = "not a string" if norm is None else "rejected by the validator" if custom else uscc_error(norm)
    msg = f"{who}: row {row}: invalid id {value!r}: {why}"
    if strict:
        raise InvalidIdError(msg)
    log.warning("%s", msg)


def _consented(uniq: np.ndarray, allowed: Allowed) -> np.ndarray:
    """Mask of the ids ``allowed`` accepts, checked block by block."""
    check = allowed if callable(allowed) else allowed.__contains__
    keep = np.zeros(uniq.size, dtype=bool)
    for lo in range(0, uniq.size, PREPARE_BLOCK):
        block = uniq[lo : lo + PREPARE_BLOCK].tolist()
        keep[lo : lo + len(block)] = [bool(check(u.decode())) for u in block]
    return keep


def prepare_ids(
    who: str,
    ids: Sequence[object],
    *,
    allowed: Allowed | None = None,
    validator: Validator | None = None,
    strict: bool = False,
) -> PreparedIds:
    """Normalise, validate, deduplicate and consent-filter ``ids``, block by block.

    ``who`` names the party in messages; ``validator`` replaces the USCC check (ids must then
    be NUL-free strings it accepts).
    """
    t0 = time.perf_counter()
    n_in = len(ids)
    valid_parts: list[np.ndarray] = []
    row_parts: list[np.ndarray] = []
    invalid_parts: list[np.ndarray] = []
    for lo in range(0, n_in, PREPARE_BLOCK):
        norm = [
            x.strip().upper() if isinstance(x, str) else None  # = normalise_id, inlined
            for x in ids[lo : lo + PREPARE_BLOCK]
        ]
        ok, valid = _valid_in_block(norm, validator)
        bad = np.flatnonzero(~ok)
        if bad.size and not any(p.size for p in invalid_parts):
            first = int(bad[0])
            _report_invalid(who, ids[lo + first], lo + first, norm[first], validator is not None, strict)
        invalid_parts.append(bad + lo)
        valid_parts.append(valid)
        row_parts.append(np.flatnonzero(ok) + lo)
    invalid_rows = np.concatenate(invalid_parts) if invalid_parts else _EMPTY_ROWS
    if invalid_rows.size:
        log.warning("%s: %d of %d ids invalid; rejected and counted", who, invalid_rows.size, n_in)
    width = max((p.dtype.itemsize for p in valid_parts), default=18)
    arr = np.concatenate([p.astype(f"S{width}") for p in valid_parts]) if valid_parts else np.zeros(0, dtype="S18")
    valid_rows = np.concatenate(row_parts) if row_parts else _EMPTY_ROWS
    del valid_parts, row_parts
    uniq, first_seen = np.unique(arr, return_index=True)  # stable: first occurrence wins
    rows = valid_rows[first_seen]
    dup_mask = np.ones(arr.size, dtype=bool)
    dup_mask[first_seen] = False
    duplicate_rows = valid_rows[dup_mask]  # ascending: valid_rows is
    del arr, valid_rows, dup_mask
    refused = 0
    if allowed is not None:
        keep = _consented(uniq, allowed)
        refused = int((~keep).sum())
        uniq, rows = uniq[keep], rows[keep]
    if uniq.size > MAX_ITEMS:
        raise ValueError(f"{who}: {uniq.size} ids exceed {MAX_ITEMS}")
    stats = {
        "input": n_in,
        "rejected_invalid": int(invalid_rows.size),
        "duplicates": int(duplicate_rows.size),
        "refused": refused,
        "used": int(uniq.size),
    }
    log.info(
        "%s: input %d, invalid %d, duplicates %d, refused %d, used %d (%.2fs)",
        who,
        n_in,
        invalid_rows.size,
        duplicate_rows.size,
        refused,
        uniq.size,
        time.perf_counter() - t0,
    )
    return PreparedIds(
        ids=uniq,
        rows=rows.astype(np.int64),
        invalid_rows=invalid_rows.astype(np.int64),
        duplicate_rows=duplicate_rows.astype(np.int64),
        stats=stats,
    )
