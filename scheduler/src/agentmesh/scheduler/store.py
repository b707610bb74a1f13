"""Durable requests: every request, its plan and every subtask transition.

`Store` is what the scheduler asks of a store; `open_store` opens the one
AGENTMESH_STORE names. `SqliteStore` is the embedded default (one file,
WAL); `PostgresStore` (pgstore.py) keeps the same rows in a PostgreSQL
database, where several scheduler replicas can share them later. Writes are queued by
the event loop and committed by one writer thread in small groups
(`storewriter.GroupWriter`), so persisting a transition costs the loop a
queue put. What the scheduler acknowledges it first waits for: a request's
rows are committed before its plan or result is sent, and its final state
before its result is. Subtask transitions in between are not waited for: a
crash can lose the last few milliseconds of them, which recovery re-runs
(and the workers' idempotency answers from their store).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from agentmesh.scheduler.records import RequestRecord, SubtaskRecord
from agentmesh.scheduler.states import SubtaskState
from agentmesh.scheduler.storerows import (
    COLUMNS,
    StoredRequest,
    outcome_row,
    request_row,
    stored_request,
    subtask_row,
)
from agentmesh.scheduler.storewriter import GroupWriter, Statement, StoreObserver, runs

__all__ = [
    "STORE_UNAVAILABLE",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredRequest",
    "is_database_url",
    "open_store",
]

log = logging.getLogger(__name__)

#: ErrorInfo reason of refusals and failures caused by a store that cannot write (or read).
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"

#: The schemes of AGENTMESH_STORE that name a PostgreSQL database rather than a file.
DATABASE_SCHEMES = ("postgresql://", "postgres://")


class Store(Protocol):
    """Where requests are kept durably."""

    #: Whether a read waits on another process (a database server): the core then reads
    #: in a thread, so that a slow or unreachable server never holds the event loop.
    remote: bool

    @property
    def up(self) -> bool:
        """Whether writes are being committed; False refuses new work."""
        ...

    @property
    def problem(self) -> str:
        """Why the store is down (empty while it is up)."""
        ...

    def save_request(self, record: RequestRecord, deadline: float, fingerprint: str = "") -> None:
        """Record a request with its plan and subtasks; `deadline` is wall-clock time."""
        ...

    def save_subtask(self, key: str, subtask: SubtaskRecord) -> None:
        """Record a subtask's transition, of the request kept under `key`
        (`RequestRecord.key`)."""
        ...

    def finish_request(self, record: RequestRecord) -> None: ...

    async def committed(self, timeout: float) -> bool:
        """Wait until every write queued so far is committed; False after `timeout` seconds."""
        ...

    def load(self, key: str) -> StoredRequest | None:
        """The request kept under `key` (`records.request_key`: its id in its tenant's
        space), or None."""
        ...

    def unfinished(self) -> Iterator[StoredRequest]:
        """Every request not finished yet."""
        ...

    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    -- The request's key: its id, qualified by its tenant ("acme/ticket-124") when it has one.
    request_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    input TEXT NOT NULL,
    priority INTEGER NOT NULL,
    budget REAL NOT NULL,
    deadline REAL NOT NULL,
    state TEXT NOT NULL,
    answer TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    fingerprint TEXT NOT NULL DEFAULT '',
    tenant TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_running ON requests (state) WHERE state = 'RUNNING';
CREATE TABLE IF NOT EXISTS subtasks (
    request_id TEXT NOT NULL,
    subtask_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (request_id, subtask_id)
);
"""

#: Columns added since the first schema, added to older files on open.
MIGRATIONS = {
    "fingerprint": "ALTER TABLE requests ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''",
    # The caller's tenant; requests from before tenants are no tenant's ("").
    "tenant": "ALTER TABLE requests ADD COLUMN tenant TEXT NOT NULL DEFAULT ''",
}

#: The schema's version (PRAGMA user_version) once the upgrades below are applied.
VERSION = 1

#: Version 1: each tenant's own space of request ids. A tenant's rows, keyed by the bare
#: id before, are keyed by the id qualified by the tenant (`records.request_key`); rows
#: of no tenant keep their key. A key already qualified holds a "/", which no id holds.
TENANT_KEYS = """
UPDATE subtasks SET request_id = (
    SELECT r.tenant || '/' || r.request_id FROM requests r WHERE r.request_id = subtasks.request_id
) WHERE request_id IN (
    SELECT request_id FROM requests WHERE tenant <> '' AND instr(request_id, '/') = 0
);
UPDATE requests SET request_id = tenant || '/' || request_id
    WHERE tenant <> '' AND instr(request_id, '/') = 0;
"""


class StoreError(Exception):
    """The store cannot be used at start: its message (one line) says which store and what
    to do."""


class StoreGone(Exception):
    """The store's file was deleted or replaced while the scheduler had it open."""


def is_database_url(store: str) -> bool:
    """Whether AGENTMESH_STORE names a PostgreSQL database (a URL) rather than a file."""
    return store.startswith(DATABASE_SCHEMES)


def open_store(
    store: str, observer: StoreObserver | None = None, *, replica: str = "", lease: float = 5.0
) -> Store | None:
    """The store AGENTMESH_STORE names: None for "" (memory only), a PostgresStore for a
    postgresql:// or postgres:// URL (as replica `replica`, with leases of `lease`
    seconds), else a SqliteStore on that file.

    Raises StoreError when it cannot be opened, reached or migrated.
    """
    if not store:
        return None
    if is_database_url(store):
        # Imported here: psycopg is needed only by those who use PostgreSQL.
        from agentmesh.scheduler.pgstore import PostgresStore

        return PostgresStore(store, observer=observer, replica=replica, lease=lease)
    return SqliteStore(store, observer=observer)


class SqliteStore:
    """Requests in one SQLite file (":memory:" keeps them in this process only).

    Raises StoreError when the file cannot be opened or fails its integrity
    check, rather than serving from a damaged store.
    """

    remote = False

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 0.005,
        observer: StoreObserver | None = None,
    ) -> None:
        self.path = str(path)
        # One connection, used by the writer thread and (under the lock) by readers.
        self._db = _open(self.path)
        self._lock = threading.Lock()
        self._writer = GroupWriter(
            SqliteSink(self._db, self._lock, self.path),
            flush_interval=flush_interval,
            observer=observer,
        )

    @property
    def up(self) -> bool:
        return self._writer.up

    @property
    def problem(self) -> str:
        return self._writer.problem

    # -- writes (queued) -------------------------------------------------------------

    def save_request(self, record: RequestRecord, deadline: float, fingerprint: str = "") -> None:
        self._writer.put(
            (
                "INSERT OR REPLACE INTO requests (request_id, plan, input, priority, budget,"
                " deadline, state, created_at, fingerprint, tenant)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                request_row(record, deadline, fingerprint),
            )
        )
        # A subtask without a row is PENDING (`stored_request`): a new request writes none,
        # and a request run again keeps only the rows of what it kept.
        self._writer.put(("DELETE FROM subtasks WHERE request_id = ?", (record.key,)))
        for subtask in record.subtasks.values():
            if subtask.state is not SubtaskState.PENDING:
                self.save_subtask(record.key, subtask)

    def save_subtask(self, key: str, subtask: SubtaskRecord) -> None:
        self._writer.put(
            (
                "INSERT OR REPLACE INTO subtasks (request_id, subtask_id, record) VALUES (?, ?, ?)",
                (key, subtask.id, subtask_row(subtask)),
            )
        )

    def finish_request(self, record: RequestRecord) -> None:
        self._writer.put(
            (
                "UPDATE requests SET state = ?, answer = ?, error = ?, finished_at = ?"
                " WHERE request_id = ?",
                outcome_row(record),
            )
        )

    async def committed(self, timeout: float) -> bool:
        return await self._writer.committed(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every queued write is committed; False on timeout."""
        return self._writer.flush(timeout)

    # -- reads ----------------------------------------------------------------------

    def load(self, key: str) -> StoredRequest | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM requests WHERE request_id = ?", (key,)
            ).fetchone()
            return None if row is None else self._stored(row)

    def unfinished(self) -> Iterator[StoredRequest]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM requests WHERE state = 'RUNNING'"
            ).fetchall()
            stored = [self._stored(row) for row in rows]
        yield from stored

    def _stored(self, row: tuple[Any, ...]) -> StoredRequest:
        subtasks = self._db.execute(
            "SELECT record FROM subtasks WHERE request_id = ?", (row[0],)
        ).fetchall()
        return stored_request(row, (raw for (raw,) in subtasks))

    def close(self) -> None:
        self._writer.close()
        self._db.close()


def _open(path: str) -> sqlite3.Connection:
    """The store's connection, checked and migrated; StoreError says what is wrong."""
    where = f"the scheduler's request store {path!r} (AGENTMESH_STORE)"
    created = False
    try:
        if path != ":memory:":
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            created = not file.exists()
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except (OSError, sqlite3.Error) as error:
        raise StoreError(f"cannot open {where}: {error}") from None
    try:
        # quick_check reads every page: a damaged file is refused here, not
        # discovered by the first request that touches the damage.
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            detail = " ".join(" ".join(problems).split())  # one line, whatever SQLite says
            raise sqlite3.DatabaseError(detail[:200] + ("..." if len(detail) > 200 else ""))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        for column, statement in MIGRATIONS.items():
            if column not in columns:
                db.execute(statement)
        if db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
            _upgrade(db)
    except sqlite3.DatabaseError as error:
        db.close()
        raise StoreError(
            f"{where} is damaged ({error}): move it aside or restore a backup, then start "
            "the scheduler again (without the file it starts an empty store)"
        ) from None
    except sqlite3.Error as error:
        db.close()
        raise StoreError(f"cannot open {where}: {error}") from None
    if created:
        log.info("created a new request store", extra={"store": path})
    return db


def _upgrade(db: sqlite3.Connection) -> None:
    """Apply the schema's versioned upgrades (`TENANT_KEYS`), in one transaction with the
    new version: a scheduler stopped in the middle leaves the file as it was."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in TENANT_KEYS.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteSink:
    """The writer's side of a SqliteStore: the connection (shared with readers under
    `lock`), and the file it must still be."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, path: str) -> None:
        self.where = path
        self._db = db
        self._lock = lock
        self._inode = _inode(path)

    def commit(self, statements: list[Statement]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                for sql, parameters in runs(statements):
                    self._db.executemany(sql, parameters)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite may have rolled back already
                raise
        # Checked after the commit: a commit into a deleted file is not durable.
        self.check()

    def check(self) -> None:
        if self._inode is not None and _inode(self.where) != self._inode:
            raise StoreGone(f"the file {self.where} was deleted or replaced while in use")

    def advice(self, error: BaseException) -> str:
        if isinstance(error, StoreGone):
            return "restore the file, or restart the scheduler"
        return "free space or fix the file's permissions; writes are retried"


def _inode(path: str) -> tuple[int, int] | None:
    """The (device, inode) the path names now; None for memory or a missing file."""
    if path == ":memory:":
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)
