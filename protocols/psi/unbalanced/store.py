"""Where unbalanced-PSI state that outlives a run lives on a node: files in the node's store.

Why: the point of unbalanced PSI is that the centre blinds its table once per key period and
every later run of every bank reuses it, and that a bank fetches the centre's tokens once per
period. Flower keeps nothing of a node between runs, so both live in files of the node's own
directory (``<node dir>/psi-store`` by default), never in ``context.state`` or on the wire.

Files (each ``MAGIC``, a one-line JSON header naming format, period and creation time, then the
:mod:`protocols.common.wire` body; written to a temporary file with mode 0600 and renamed):

* centre ``table-<period>.ubpsi``: :class:`~protocols.psi.unbalanced.centre.TableRecord`
  (the period's secret ``k_C``, the shuffled tokens, the prepared ids). Prepared on first use,
  reused while the period and the centre's ids are unchanged, re-prepared (and every file of
  an older period deleted) otherwise.
* centre ``grant-<period>-<bank hash>.ubpsi``: one bank's grant (its cache positions, the ids
  it had evaluated against its budget, its run ids): one file per bank, so concurrent runs of
  different banks never write the same file.
* bank ``cache-<period>-<centre hash>.ubpsi``: the opened cache (the centre's tokens this bank
  may match).

Concurrency: every read-modify-write holds an exclusive ``flock`` on the store's lock file
(threads of one process and processes alike), so two runs cannot both prepare a period or
lose each other's budget updates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocols.common import wire
from protocols.psi.engine import DEFAULT_TRUNCATE, PsiProtocolError
from protocols.psi.kernels import ChunkMapper
from protocols.psi.unbalanced.bank import BankCache
from protocols.psi.unbalanced.centre import DEFAULT_QUERY_BUDGET, GrantRecord, PreparedCentre, TableRecord

log = logging.getLogger(__name__)
MAGIC = b"FCUBPSI1\n"
TABLE, GRANT, CACHE = "fedcredit-ubpsi-table-v1", "fedcredit-ubpsi-grant-v1", "fedcredit-ubpsi-cache-v1"
_SUFFIX = ".ubpsi"


class StoreError(PsiProtocolError):
    """A stored unbalanced-PSI file is unreadable or not what its name says; the message names the file."""


def ids_digest(ids: Sequence[object]) -> str:
    """SHA-256 of an id list (order included): a stored table belongs to exactly these ids."""
    return hashlib.sha256("\n".join(map(str, ids)).encode() + b"\n").hexdigest()


def _name_hash(name: str) -> str:
    """A file-name-safe, fixed-length tag for a party name (names may hold any character)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def write_file(path: Path, header: dict[str, Any], record: object) -> None:
    """``record`` under ``header`` at ``path``: mode 0600, atomically (temporary file, fsync, rename)."""
    body = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + wire.encode(record)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a store file (refused, naming the file, if it is not one)."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
        line = f.readline(64 * 1024)
    if head != MAGIC or not line.endswith(b"\n"):
        raise StoreError(f"{path}: not an unbalanced-PSI store file")
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise StoreError(f"{path}: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise StoreError(f"{path}: unreadable header")
    return header


def read_file(path: Path, fmt: str, cls: type[Any]) -> tuple[dict[str, Any], Any]:
    """(header, record) of a store file of format ``fmt`` holding a ``cls``."""
    raw = path.read_bytes()
    if not raw.startswith(MAGIC):
        raise StoreError(f"{path}: not an unbalanced-PSI store file")
    end = raw.find(b"\n", len(MAGIC))
    try:
        header = json.loads(raw[len(MAGIC) : end])
        record = wire.decode(raw[end + 1 :], cls)
    except (ValueError, wire.WireError) as exc:
        raise StoreError(f"{path}: unreadable ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise StoreError(f"{path}: format {header.get('format') if isinstance(header, dict) else None!r}, not {fmt!r}")
    return header, record


class _Store:
    """A directory of one node's store files (mode 0700) with one lock file."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive over threads and processes: each call opens the lock file anew (flock is per open file)."""
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _drop_other_periods(self, prefix: str, period: str) -> None:
        """Delete this kind's files (``table``, ``grant``, ``cache``) of every other key period."""
        tail = len(_SUFFIX) + (0 if prefix == "table" else 17)  # "-<16 hex>" after the period
        for p in self.dir.glob(f"{prefix}-*{_SUFFIX}"):
            if p.name[len(prefix) + 1 : len(p.name) - tail] != period:
                p.unlink(missing_ok=True)


# Tables are immutable once written: each process keeps the last few it loaded (by path and
# file identity), so a step of a 4M-firm centre does not re-read hundreds of MB.
_TABLES: dict[Path, tuple[tuple[int, int, int], PreparedCentre]] = {}
_TABLES_LOCK = threading.Lock()


class CentreStore(_Store):
    """The centre's prepared tables and per-bank grants."""

    def table_path(self, period: str) -> Path:
        return self.dir / f"table-{period}{_SUFFIX}"

    def grant_path(self, period: str, bank: str) -> Path:
        return self.dir / f"grant-{period}-{_name_hash(bank)}{_SUFFIX}"

    def table(
        self,
        period: str,
        ids: Sequence[object],
        *,
        digest: str | None = None,
        truncate: int = DEFAULT_TRUNCATE,
        query_budget: int = DEFAULT_QUERY_BUDGET,
        pool: ChunkMapper | None = None,
    ) -> tuple[PreparedCentre, bool]:
        """(the period's table for ``ids``, whether it was prepared by this call).

        Prepared when there is none for ``period`` or the stored one is for other ids or another
        truncation; then every file of another period, and this period's grants (they index the
        old table), are deleted. The query budget is policy, not key material: the current
        setting applies to a stored table too. Returns a view with no grants loaded
        (:meth:`grants` loads them).
        """
        digest = digest or ids_digest(ids)
        path = self.table_path(period)
        with self.locked():
            table = self._load_table(path, period, digest, truncate)
            prepared = table is None
            if table is None:
                table = PreparedCentre(ids, period=period, truncate=truncate, query_budget=query_budget, pool=pool)
                self._drop_other_periods("table", period)
                self._drop_other_periods("grant", period)
                for g in self.dir.glob(f"grant-{period}-*{_SUFFIX}"):
                    g.unlink()
                header: dict[str, Any] = {"format": TABLE, "period": period, "created": _now(), "ids_digest": digest}
                header.update(truncate=truncate, size=table.size)
                write_file(path, header, table.to_record())
                log.info("unbalanced PSI centre: prepared period %r (%d firms) in %s", period, table.size, path)
        view = table.view(pool=pool)
        view.query_budget = query_budget
        return view, prepared

    def _load_table(self, path: Path, period: str, digest: str, truncate: int) -> PreparedCentre | None:
        if not path.exists():
            return None
        header = read_header(path)
        if header.get("format") != TABLE or header.get("period") != period:
            raise StoreError(f"{path}: header names format {header.get('format')!r}, period {header.get('period')!r}")
        if header.get("ids_digest") != digest or header.get("truncate") != truncate:
            log.info("unbalanced PSI centre: the ids or truncation changed since %s; preparing again", path)
            return None
        st = os.stat(path)
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        with _TABLES_LOCK:
            hit = _TABLES.get(path)
            if hit is not None and hit[0] == ident:
                return hit[1]
        _, rec = read_file(path, TABLE, TableRecord)
        table = PreparedCentre.from_record(rec)
        if table.period != period:
            raise StoreError(f"{path}: holds period {table.period!r}, not {period!r}")
        with _TABLES_LOCK:
            _TABLES[path] = (ident, table)
            while len(_TABLES) > 4:
                _TABLES.pop(next(iter(_TABLES)))
        return table

    @contextlib.contextmanager
    def grants(self, table: PreparedCentre, bank: str) -> Iterator[PreparedCentre]:
        """``table`` with ``bank``'s stored grant loaded, locked; the grant is written back after.

        Only this bank's grant is loaded: a run can address no other bank's cache or budget.
        """
        path = self.grant_path(table.period, bank)
        with self.locked():
            if path.exists():
                _, rec = read_file(path, GRANT, GrantRecord)
                if rec.bank != bank:
                    raise StoreError(f"{path}: holds the grant of {rec.bank!r}, not {bank!r}")
                table.adopt_grant(rec)
            yield table
            if table.has_grant(bank):
                header = {"format": GRANT, "period": table.period, "bank": bank, "updated": _now()}
                write_file(path, header, table.grant_record(bank))


class BankStore(_Store):
    """The bank's caches, one per centre and key period."""

    def cache_path(self, period: str, centre: str) -> Path:
        return self.dir / f"cache-{period}-{_name_hash(centre)}{_SUFFIX}"

    def load(self, period: str, bank: str, centre: str) -> BankCache | None:
        """This period's cache from ``centre`` (None if there is none; other periods' are deleted)."""
        path = self.cache_path(period, centre)
        with self.locked():
            self._drop_other_periods("cache", period)
            if not path.exists():
                return None
            header, tokens = read_file(path, CACHE, _Tokens)
        if (header.get("period"), header.get("bank"), header.get("centre")) != (period, bank, centre):
            raise StoreError(f"{path}: the cache of {header.get('bank')!r} from {header.get('centre')!r}")
        t = tokens.tokens
        if t.ndim != 2 or t.dtype != np.uint8 or t.shape[1] != header.get("truncate"):
            raise StoreError(f"{path}: tokens of shape {t.shape} do not match the header")
        return BankCache(bank, period, int(t.shape[1]), t)

    def save(self, cache: BankCache, centre: str) -> None:
        header: dict[str, Any] = {
            "format": CACHE,
            "period": cache.period,
            "created": _now(),
            "bank": cache.bank,
            "centre": centre,
        }
        header.update(truncate=cache.truncate, count=cache.size)
        with self.locked():
            write_file(self.cache_path(cache.period, centre), header, _Tokens(np.ascontiguousarray(cache.tokens)))


@dataclass
class _Tokens:
    """Wire body of a bank cache file: (count, truncate) uint8 in cache-position order."""

    tokens: np.ndarray
