"""The centre's inference limits: quotas per bank and firm, and one answer per firm per window.

Why: a partial score (``u_c``) or a set of split directions is a function of one enterprise's
public record. Without limits a bank could ask for the same firm again and again (after each
update of the centre's table, to difference the answers) or sweep the whole register under
the cover of "applicants". The centre therefore keeps a book of what it answered to whom:

* a *repeat* (same bank, same firm, same model and splits, within ``repeat_window_days``) gets
  the answer already given, byte for byte: nothing new leaves, so it does not count;
* a *fresh* answer counts against ``per_firm_per_period`` (per bank and firm, rolling
  ``period_days``) and against ``per_run`` (per bank and run);
* a query over either quota is *refused*: the bank gets the firm back as refused (never as
  "not found", which would be a lie about the register) and the centre logs the refusal.

The book is plain data (JSON-ready entries), kept by the centre's node between runs; the
protocol never sees a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from protocols.inference.messages import InferenceError

REPEAT = "repeat"
FRESH = "fresh"
REFUSED_FIRM = "refused:per_firm_quota"
REFUSED_RUN = "refused:per_run_quota"


@dataclass(frozen=True)
class QueryPolicy:
    """The centre's limits (its own policy: the bank cannot change them)."""

    per_firm_per_period: int = 4  # fresh answers per (bank, firm) in any period_days window
    period_days: int = 30
    per_run: int = 100_000  # fresh answers per (bank, run)
    repeat_window_days: int = 30  # a firm asked again within this many days gets the same answer

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name.endswith("days") else 1):
                raise InferenceError(f"inference quota {name} = {value!r}: must be an integer >= 1 (days >= 0)")


@dataclass
class BookEntry:
    """One answer (or refusal) the centre gave: what the node appends to its book."""

    day: str  # ISO date
    run_id: str
    bank: str
    uscc: str
    model: str  # model part digest + requested split ids: a different model is a different question
    decision: str  # FRESH, REPEAT or a REFUSED_* reason
    found: bool = False
    value: list = field(default_factory=list)  # [u_c] (LR) or direction bits (SecureBoost); empty if refused


def model_key(model_digest: str, split_ids: Iterable[int]) -> str:
    """What makes two queries the same question: the model part and the split ids asked."""
    ids = ",".join(str(int(i)) for i in split_ids)
    return f"{model_digest}:{hashlib.sha256(ids.encode()).hexdigest()[:16]}"


class QueryBook:
    """The centre's record of answers; :meth:`plan` decides each query of a batch."""

    def __init__(self, policy: QueryPolicy | None = None, entries: Iterable[dict | BookEntry] = ()) -> None:
        self.policy = policy or QueryPolicy()
        self.entries = [e if isinstance(e, BookEntry) else BookEntry(**e) for e in entries]

    def plan(
        self, bank: str, run_id: str, model: str, usccs: list[str], day: str
    ) -> list[tuple[str, BookEntry | None]]:
        """Per queried USCC, in order: (decision, the earlier entry to repeat or None).

        Queries of the same batch count as they come (a duplicate within one request is a repeat).
        """
        p = self.policy
        today = dt.date.fromisoformat(day)
        repeat_from = (today - dt.timedelta(days=p.repeat_window_days)).isoformat()
        period_from = (today - dt.timedelta(days=p.period_days - 1)).isoformat() if p.period_days else day
        latest: dict[str, BookEntry] = {}
        fresh_per_firm: dict[str, int] = {}
        fresh_run = 0
        for e in self.entries:
            if e.bank != bank:
                continue
            if e.decision == FRESH and e.model == model and e.day >= repeat_from:  # a repeat never extends the window
                if e.uscc not in latest or e.day >= latest[e.uscc].day:
                    latest[e.uscc] = e
            if e.decision == FRESH:
                if e.day >= period_from:
                    fresh_per_firm[e.uscc] = fresh_per_firm.get(e.uscc, 0) + 1
                if e.run_id == run_id:
                    fresh_run += 1
        out: list[tuple[str, BookEntry | None]] = []
        in_batch: dict[str, int] = {}
        for i, u in enumerate(usccs):
            if u in latest:
                out.append((REPEAT, latest[u]))
            elif u in in_batch:
                out.append((REPEAT, None))  # filled from the first occurrence by the caller
            elif fresh_per_firm.get(u, 0) >= p.per_firm_per_period:
                out.append((REFUSED_FIRM, None))
            elif fresh_run >= p.per_run:
                out.append((REFUSED_RUN, None))
            else:
                out.append((FRESH, None))
                fresh_run += 1
                in_batch[u] = i
        return out

    def add(self, entries: Iterable[BookEntry]) -> None:
        self.entries.extend(entries)

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.entries]
