"""SQLite storage shared by the run ledger and the egress logs.

Why SQLite in WAL mode with one transaction per record: a process killed at any instant leaves
either the whole record or none of it (SQLite's atomic commit), so a crashed run yields a ledger
that verifies up to its last complete record. ``BEGIN IMMEDIATE`` takes the write lock *before*
reading the chain head, so several processes appending to one file (Flower may run a node's message
handlers in different processes) still produce one unbroken chain.

Nothing in the ``fedcredit_meta`` table is evidence: it only helps tools recognise the file.
Everything an auditor relies on is in ``fedcredit_records`` and covered by hashes and signatures.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fedcredit.ledger.records import FORMAT_VERSION, LedgerError, LedgerFileError, Record

TABLE = "fedcredit_records"
META = "fedcredit_meta"
COLUMNS = ("seq", "log", "run_id", "kind", "ts", "writer", "prev_hash", "payload", "hash", "sig")
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq       INTEGER PRIMARY KEY,
    log       TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    ts        TEXT NOT NULL,
    writer    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    payload   TEXT NOT NULL,
    hash      TEXT NOT NULL,
    sig       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _row_to_record(row: tuple) -> Record:
    seq, log, run_id, kind, ts, writer, prev_hash, payload, h, sig = row
    return Record(
        log=log,
        seq=seq,
        run_id=run_id,
        kind=kind,
        ts=ts,
        writer=writer,
        prev_hash=prev_hash,
        payload_text=payload,
        hash=h,
        sig=sig,
    )


def check_is_sqlite(path: Path) -> None:
    """Raise :class:`LedgerFileError` unless ``path`` is an existing, non-empty SQLite file."""
    if not path.exists():
        raise LedgerFileError(f"ledger file not found: {path}")
    if not path.is_file():
        raise LedgerFileError(f"not a file: {path}")
    with path.open("rb") as fh:
        magic = fh.read(len(_SQLITE_MAGIC))
    if not magic:
        raise LedgerFileError(f"{path} is empty (0 bytes), not a ledger")
    if magic != _SQLITE_MAGIC:
        raise LedgerFileError(f"{path} is not an SQLite database (wrong file header), so not a ledger")


_OPEN_TIMEOUT = 30.0  # seconds a new log may stay locked by a concurrent opener


class SqliteStore:
    """An open ledger/egress file: append records atomically, read the chain head."""

    def __init__(self, path: str | os.PathLike[str], *, log: str, create: bool) -> None:
        self.path = Path(path)
        self.log = log
        self._conn: sqlite3.Connection | None = None  # None once closed
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            check_is_sqlite(self.path)
        # Two processes of one node may open a new log at the same instant (Flower may run a
        # node's handlers in different processes). Switching a fresh file to WAL takes an
        # exclusive lock that SQLite's busy timeout does not wait for, so opening is retried.
        deadline = time.monotonic() + _OPEN_TIMEOUT
        while True:
            try:
                self._open(create, log)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerFileError(f"{self.path}: cannot open as a ledger: {exc}") from None
                if self._conn is not None:
                    self._conn.close()
                time.sleep(0.01)
            except sqlite3.DatabaseError as exc:
                raise LedgerFileError(f"{self.path}: cannot open as a ledger: {exc}") from None
        self._lock = threading.Lock()
        try:
            os.chmod(self.path, 0o600)
        except OSError:  # pragma: no cover - e.g. foreign owner; not fatal
            pass

    def _open(self, create: bool, log: str) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"{self.path}: could not switch SQLite to WAL mode (got {mode})")
        # FULL: each committed record also survives power loss, not just a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        if create:
            conn.executescript(_SCHEMA)
            conn.execute(
                f"INSERT OR IGNORE INTO {META}(key, value) VALUES (?, ?)",
                ("format", f"fedcredit-{log}/{FORMAT_VERSION}"),
            )
        elif not _has_table(conn):
            raise LedgerFileError(
                f"{self.path} is an SQLite database without a fedcredit ledger table ({TABLE}), so not a ledger"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Exclusive write transaction (``BEGIN IMMEDIATE``), committed on success."""
        conn = self._conn
        if conn is None:
            raise LedgerError(f"{self.path} is closed")
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    @staticmethod
    def head(conn: sqlite3.Connection) -> Record | None:
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        return _row_to_record(row) if row else None

    @staticmethod
    def first(conn: sqlite3.Connection) -> Record | None:
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq ASC LIMIT 1").fetchone()
        return _row_to_record(row) if row else None

    @staticmethod
    def insert(conn: sqlite3.Connection, rec: Record) -> None:
        conn.execute(
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.seq,
                rec.log,
                rec.run_id,
                rec.kind,
                rec.ts,
                rec.writer,
                rec.prev_hash,
                rec.payload_text,
                rec.hash,
                rec.sig,
            ),
        )

    def append(self, build: Callable[[Record | None], Record]) -> Record:
        """Build the next record from the current head (inside the write lock) and commit it."""
        with self.transaction() as conn:
            rec = build(self.head(conn))
            self.insert(conn, rec)
        return rec

    def close(self) -> None:
        """Checkpoint the WAL into the main file (so the ledger is one self-contained file)."""
        conn = self._conn
        if conn is None:
            return
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        self._conn = None


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (TABLE,)).fetchone()
    return row is not None


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a ledger/egress file in ``seq`` order, values exactly as stored.

    Opens the file read-only. Values are *not* type-checked here (a tampered file may hold an
    integer where text belongs); the verifier does that.
    """
    p = Path(path)
    check_is_sqlite(p)
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LedgerFileError(f"{p}: cannot open read-only: {exc}") from None
    try:
        if not _has_table(conn):
            raise LedgerFileError(
                f"{p} is an SQLite database without a fedcredit ledger table ({TABLE}), so not a ledger"
            )
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")]
        missing = [c for c in COLUMNS if c not in cols]
        if missing:
            raise LedgerFileError(f"{p}: ledger table lacks column(s) {', '.join(missing)}")
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY seq ASC, rowid ASC").fetchall()
    except sqlite3.DatabaseError as exc:
        raise LedgerFileError(f"{p}: corrupt SQLite database: {exc}") from None
    finally:
        conn.close()
    return [_row_to_record(r) for r in rows]
