"""The request store in PostgreSQL: the rows SqliteStore keeps, in a database server.

Selected by AGENTMESH_STORE=postgresql://user:password@host:port/database
(or postgres://). The contract is SqliteStore's (see store.py): the same
writer thread (`storewriter.GroupWriter`) commits the queued writes in
groups, here on a connection of its own, and reports the store down while
the server cannot be reached or refuses writes (the scheduler is then
NOT_SERVING and refuses new requests with UNAVAILABLE); it reconnects and
retries until a commit succeeds. Reads (a request by its id, the unfinished
ones at start) use a second connection, each one query.

The schema is created and upgraded by the numbered SQL files in
`migrations/` (package data), applied at start in one transaction under an
advisory lock, so that schedulers starting together do not race, and
recorded in `schema_migrations`. A server that cannot be reached or
authenticated at start is a StoreError: one line, naming the URL without
its password.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agentmesh.errors import Unavailable
from agentmesh.scheduler.records import RequestRecord, SubtaskRecord
from agentmesh.scheduler.states import SubtaskState
from agentmesh.scheduler.store import STORE_UNAVAILABLE, StoreError
from agentmesh.scheduler.storerows import (
    COLUMNS,
    StoredRequest,
    outcome_row,
    request_row,
    stored_request,
    subtask_row,
)
from agentmesh.scheduler.storewriter import GroupWriter, Statement, StoreObserver, runs

log = logging.getLogger(__name__)

#: The key of the advisory lock that migrations hold ("agme"): one scheduler migrates
#: at a time, and the others wait for it, then find nothing left to apply.
MIGRATION_LOCK = 0x61676D65

#: Seconds a connection attempt may take. Reads happen on the event loop: a server
#: that does not answer must not hold it long.
CONNECT_TIMEOUT = 3

#: Connection settings, unless the URL sets them: a server gone without a word (a dead
#: host, a cut network) is noticed by TCP within about 10 s rather than the system's
#: default of minutes.
CONNECTION: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT,
    "application_name": "agentmesh-scheduler",
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}

SAVE_REQUEST = (
    "INSERT INTO requests (request_id, plan, input, priority, budget, deadline, state,"
    " created_at, fingerprint, tenant) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (request_id) DO UPDATE SET plan = EXCLUDED.plan, input = EXCLUDED.input,"
    " priority = EXCLUDED.priority, budget = EXCLUDED.budget, deadline = EXCLUDED.deadline,"
    " state = EXCLUDED.state, answer = NULL, error = NULL, created_at = EXCLUDED.created_at,"
    " finished_at = NULL, fingerprint = EXCLUDED.fingerprint, tenant = EXCLUDED.tenant"
)
CLEAR_SUBTASKS = "DELETE FROM subtasks WHERE request_id = %s"
SAVE_SUBTASK = (
    "INSERT INTO subtasks (request_id, subtask_id, record) VALUES (%s, %s, %s)"
    " ON CONFLICT (request_id, subtask_id) DO UPDATE SET record = EXCLUDED.record"
)
FINISH_REQUEST = (
    "UPDATE requests SET state = %s, answer = %s, error = %s, finished_at = %s"
    " WHERE request_id = %s"
)
#: A request with its subtasks' records, in one query (one snapshot, one round trip).
SELECT = (
    f"SELECT {COLUMNS}, ARRAY(SELECT record FROM subtasks s WHERE s.request_id = r.request_id)"
    " FROM requests r"
)


class StoreUnreachable(Exception):
    """The database could not be used; the message is one line, without the password."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of `migrations/`."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with the scheduler, in order."""
    found = []
    for file in resources.files("agentmesh.scheduler").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", file.name)
        if match:
            found.append(Migration(int(match[1]), match[2], file.read_text()))
    return sorted(found, key=lambda m: m.version)


def migrate(db: psycopg.Connection[Any], where: str) -> list[int]:
    """Apply the migrations `db` has not had, in one transaction; the versions applied.

    The advisory lock is taken before anything else, the version table's creation
    included: two schedulers starting on an empty database would otherwise both
    create it, and one would fail.
    """
    known = migrations()
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {v for (v,) in db.execute("SELECT version FROM schema_migrations")}
        newest = max((m.version for m in known), default=0)
        if applied and max(applied) > newest:
            raise StoreError(
                f"the request store {where} (AGENTMESH_STORE) has schema version "
                f"{max(applied)}, newer than this scheduler knows ({newest}): "
                "run a scheduler as new as the one that migrated it"
            )
        done = []
        for migration in known:
            if migration.version not in applied:
                db.execute(migration.sql.encode())  # no parameters: several statements may run
                db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                done.append(migration.version)
    return done


def redact(url: str) -> str:
    """The URL with its password (in the address or a password= parameter) as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}:***@{host}" if colon else netloc
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: str) -> str:
    parts = urlsplit(url)
    found = re.search(r"(?:^|&)password=([^&]*)", parts.query)
    return parts.password or (found[1] if found else "")


class Connector:
    """Opens connections to one database and turns its errors into one safe line."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        secret = _password(url)
        # As written in the URL and as libpq reads it (percent-decoded).
        self._secrets = sorted({secret, unquote(secret)} - {""}, key=len, reverse=True)

    def connect(self) -> psycopg.Connection[Any]:
        try:
            settings = {**CONNECTION, **conninfo_to_dict(self.url)}
            return psycopg.connect(autocommit=True, **settings)
        except psycopg.Error as error:
            raise StoreUnreachable(self.line(error)) from None

    def line(self, error: BaseException) -> str:
        """The error as one line that does not show the password."""
        text = " ".join(str(error).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300] + ("..." if len(text) > 300 else "")


class PostgresSink:
    """The writer's side of a PostgresStore: its own connection, made again when lost."""

    def __init__(self, connector: Connector, db: psycopg.Connection[Any]) -> None:
        self.where = connector.where
        self._connector = connector
        self._db: psycopg.Connection[Any] | None = db

    def commit(self, statements: list[Statement]) -> None:
        db = self._connection()
        try:
            # One pipeline for the whole batch: its statements, BEGIN and COMMIT go out
            # together and the batch costs one round trip, not one per run of statements.
            with db.pipeline(), db.transaction(), db.cursor() as cursor:
                for sql, parameters in runs(statements):
                    cursor.executemany(sql, parameters)
        except psycopg.Error as error:
            self._forget(db)
            raise StoreUnreachable(self._connector.line(error)) from None

    def check(self) -> None:
        db = self._connection()
        try:
            db.execute("SELECT 1")
        except psycopg.Error as error:
            self._forget(db)
            raise StoreUnreachable(self._connector.line(error)) from None

    def advice(self, error: BaseException) -> str:
        return "check that the database server is up, reachable and writable; writes are retried"

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None:
            self._db = self._connector.connect()
        return self._db

    def _forget(self, db: psycopg.Connection[Any]) -> None:
        """Drop the connection after any failure: the next try makes a new one. A
        connection lost in the middle of executemany's pipeline is not always marked
        broken; it stays in an aborted pipeline where every later statement fails."""
        db.close()
        self._db = None


class PostgresStore:
    """Requests in a PostgreSQL database, migrated at start; the contract of `Store`.

    Raises StoreError when the database cannot be reached, authenticated or
    migrated.
    """

    def __init__(
        self,
        url: str,
        *,
        flush_interval: float = 0.005,
        observer: StoreObserver | None = None,
    ) -> None:
        self._connector = Connector(url)
        #: The URL without its password: for log lines and error metadata.
        self.path = self._connector.where
        where = f"the request store {self.path} (AGENTMESH_STORE)"
        try:
            writer_db = self._connector.connect()
        except StoreUnreachable as error:
            raise StoreError(f"cannot connect to {where}: {error}") from None
        try:
            applied = migrate(writer_db, self.path)
            self._db: psycopg.Connection[Any] | None = self._connector.connect()
        except psycopg.Error as error:
            writer_db.close()
            raise StoreError(f"cannot migrate {where}: {self._connector.line(error)}") from None
        except (StoreError, StoreUnreachable) as error:
            writer_db.close()
            raise StoreError(str(error)) from None
        if applied:
            log.info("migrated the request store", extra={"store": self.path, "versions": applied})
        self._lock = threading.Lock()
        self._sink = PostgresSink(self._connector, writer_db)
        self._writer = GroupWriter(self._sink, flush_interval=flush_interval, observer=observer)

    @property
    def up(self) -> bool:
        return self._writer.up

    @property
    def problem(self) -> str:
        return self._writer.problem

    # -- writes (queued) -------------------------------------------------------------

    def save_request(self, record: RequestRecord, deadline: float, fingerprint: str = "") -> None:
        self._writer.put((SAVE_REQUEST, request_row(record, deadline, fingerprint)))
        # As in SqliteStore: a step without a row is PENDING.
        self._writer.put((CLEAR_SUBTASKS, (record.request_id,)))
        for subtask in record.subtasks.values():
            if subtask.state is not SubtaskState.PENDING:
                self.save_subtask(record.request_id, subtask)

    def save_subtask(self, request_id: str, subtask: SubtaskRecord) -> None:
        self._writer.put((SAVE_SUBTASK, (request_id, subtask.id, subtask_row(subtask))))

    def finish_request(self, record: RequestRecord) -> None:
        self._writer.put((FINISH_REQUEST, outcome_row(record)))

    async def committed(self, timeout: float) -> bool:
        return await self._writer.committed(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every queued write is committed; False on timeout."""
        return self._writer.flush(timeout)

    # -- reads ----------------------------------------------------------------------

    def load(self, request_id: str) -> StoredRequest | None:
        """The request, or None; UNAVAILABLE (STORE_UNAVAILABLE) when it cannot be read."""
        rows = self._read(f"{SELECT} WHERE request_id = %s", (request_id,))
        return stored_request(rows[0][:-1], rows[0][-1]) if rows else None

    def unfinished(self) -> Iterator[StoredRequest]:
        for row in self._read(f"{SELECT} WHERE state = 'RUNNING'", ()):
            yield stored_request(row[:-1], row[-1])

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of one query, on a connection made again once if it was lost (the server
        restarted since the last read)."""
        with self._lock:
            for attempt in (1, 2):
                db = self._db
                try:
                    if db is None:
                        db = self._db = self._connector.connect()
                    return db.execute(sql, parameters).fetchall()
                except (psycopg.Error, StoreUnreachable) as error:
                    if db is not None:  # made again on the next try, as the writer's is
                        db.close()
                        self._db = None
                    if attempt == 2 or not isinstance(error, psycopg.OperationalError):
                        raise Unavailable(
                            f"the request store cannot be read ({self._connector.line(error)})",
                            reason=STORE_UNAVAILABLE,
                            metadata={"store": self.path},
                        ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._writer.close()
        self._sink.close()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
