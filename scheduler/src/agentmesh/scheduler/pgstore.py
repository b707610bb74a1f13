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
recorded in `schema_migrations` (pgconnect.py). A server that cannot be
reached or authenticated at start is a StoreError: one line, naming the URL
without its password. Several schedulers may share the database: every
write of a running request is fenced by its owner and epoch (pgreplicas.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from agentmesh.errors import Unavailable
from agentmesh.scheduler.pgconnect import (
    Connector,
    StoreUnreachable,
    migrate,
    migrations,
    redact,
)
from agentmesh.scheduler.pgreplicas import (
    CLAIM,
    CLEAR_SUBTASKS,
    FENCE,
    FINISH_REQUEST,
    MESH_BACKLOG,
    RELEASE,
    RENEW,
    REPORT_BACKLOG,
    SAVE_REQUEST,
    SAVE_SUBTASK,
    Lease,
    default_replica,
    fence,
    fenced_requests,
)
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

__all__ = [
    "CLEAR_SUBTASKS",
    "Connector",
    "PostgresSink",
    "PostgresStore",
    "StoreUnreachable",
    "migrate",
    "migrations",
    "redact",
]

log = logging.getLogger(__name__)

#: A request with its subtasks' records, in one query (one snapshot, one round trip).
SELECT = (
    f"SELECT {COLUMNS}, r.epoch,"
    " ARRAY(SELECT record FROM subtasks s WHERE s.request_id = r.request_id) FROM requests r"
)


class PostgresSink:
    """The writer's side of a PostgresStore: its own connection, made again when lost."""

    def __init__(self, connector: Connector, db: psycopg.Connection[Any], *, replica: str) -> None:
        self.where = connector.where
        #: The replica whose requests the batches' fences check (its store's).
        self._replica = replica
        self._connector = connector
        self._db: psycopg.Connection[Any] | None = db
        #: Told (on the writer's thread) the ids of requests whose writes a committed
        #: batch's fence refused: they have a newer owner.
        self.lost: Callable[[set[str]], None] = lambda ids: None

    def commit(self, statements: list[Statement]) -> None:
        db = self._connection()
        saves = [parameters for sql, parameters in statements if sql == SAVE_REQUEST]
        requests = fenced_requests(statements)
        try:
            # One pipeline for the whole batch, two round trips: BEGIN, the saves and the
            # fence, read back; then the writes past the fence and COMMIT. BEGIN and COMMIT
            # by hand: psycopg's transaction() in a pipeline syncs at each of its ends. The
            # fence's locks hold until COMMIT: no takeover slips between check and write.
            with db.pipeline(), db.cursor() as cursor:
                cursor.execute("BEGIN")
                if saves:
                    cursor.executemany(SAVE_REQUEST, saves)
                held: dict[str, int] = {}
                if requests:
                    held = dict(cursor.execute(FENCE, (requests, self._replica)).fetchall())
                writes, lost = fence(statements, held)
                for sql, parameters in runs(writes):
                    cursor.executemany(sql, parameters)
                cursor.execute("COMMIT")
        except psycopg.Error as error:
            self._forget(db)
            raise StoreUnreachable(self._connector.line(error)) from None
        except BaseException:
            self._forget(db)  # never leave a transaction open for the next batch to commit
            raise
        if lost:
            self.lost(lost)

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

    remote = True

    def __init__(
        self,
        url: str,
        *,
        flush_interval: float = 0.005,
        observer: StoreObserver | None = None,
        replica: str = "",
        lease: float = 5.0,
    ) -> None:
        #: This scheduler among the replicas sharing the database, and its leases.
        self.lease = Lease(replica or default_replica(), lease)
        #: The epoch this replica holds each of its running requests at (by key): what its
        #: writes are fenced with. Written on the event loop, and by `claim` (on a thread).
        self._epochs: dict[str, int] = {}
        #: Told, on the event loop, of requests another replica took over.
        self._on_lost: Callable[[str], None] = lambda key: None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        self._sink = PostgresSink(self._connector, writer_db, replica=self.lease.replica)
        self._sink.lost = self._lost
        self._writer = GroupWriter(self._sink, flush_interval=flush_interval, observer=observer)

    @property
    def up(self) -> bool:
        return self._writer.up

    @property
    def problem(self) -> str:
        return self._writer.problem

    # -- writes (queued) -------------------------------------------------------------

    def save_request(self, record: RequestRecord, deadline: float, fingerprint: str = "") -> None:
        """A new request (epoch 1), or one run again (the epoch after the one read), owned
        by this replica; refused (and reported lost) when another replica has it."""
        record.epoch += 1
        epoch = self._epochs[record.key] = record.epoch
        row = request_row(record, deadline, fingerprint)
        self._writer.put((SAVE_REQUEST, self.lease.save_request(row, epoch)))
        # As in SqliteStore: a step without a row is PENDING.
        self._writer.put((CLEAR_SUBTASKS, self.lease.clear_subtasks(record.key, epoch)))
        for subtask in record.subtasks.values():
            if subtask.state is not SubtaskState.PENDING:
                self.save_subtask(record.key, subtask)

    def save_subtask(self, key: str, subtask: SubtaskRecord) -> None:
        epoch = self._epochs.get(key)
        if epoch is None:  # no longer this replica's: nothing it does is kept
            return
        row = self.lease.save_subtask(key, subtask.id, subtask_row(subtask), epoch)
        self._writer.put((SAVE_SUBTASK, row))

    def finish_request(self, record: RequestRecord) -> None:
        epoch = self._epochs.pop(record.key, None)
        if epoch is not None:
            row = self.lease.finish_request(outcome_row(record), epoch)
            self._writer.put((FINISH_REQUEST, row))

    # -- replicas (pgreplicas.py) -------------------------------------------------------

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Call `on_lost(key)` on this event loop for each running request (by its key)
        another replica took over (found when a fenced write of it is refused)."""
        self._loop = asyncio.get_running_loop()
        self._on_lost = on_lost

    def renew(self) -> None:
        """Queue the renewal of every running request's lease (through the writer)."""
        self._writer.put((RENEW, self.lease.renew()))

    def claim(self, limit: int | None = 100, *, mine: bool = False) -> list[StoredRequest]:
        """Claim running requests whose lease expired (and, with `mine`, this replica's
        own: at start) with the next epoch; at most `limit` (None: all). Blocking: run it
        on a thread."""
        with self._lock:
            try:
                db = self._reader()
                with db.transaction():
                    released = dict(db.execute(CLAIM, self.lease.claim(limit, mine)).fetchall())
                    rows = db.execute(
                        f"{SELECT} WHERE request_id = ANY(%s)", (list(released),)
                    ).fetchall()
            except (psycopg.Error, StoreUnreachable) as error:
                self._drop_reader()
                raise self._unreadable(error) from None
        claimed = [self._stored(row) for row in rows]
        for stored in claimed:
            self._epochs[stored.record.key] = stored.record.epoch
            stored.released = released[stored.record.key]
        return claimed

    def report_backlog(self, backlog: str) -> None:
        """Queue this replica's backlog (JSON text) for the others to read."""
        self._writer.put((REPORT_BACKLOG, (self.lease.replica, backlog)))

    def mesh_backlog(self, fresh: float) -> dict[str, str]:
        """Each replica's backlog, of those heard from within `fresh` seconds."""
        return dict(self._read(MESH_BACKLOG, (fresh,)))

    def _lost(self, keys: set[str]) -> None:
        """From the writer's thread: requests (by key) whose writes were refused."""
        loop = self._loop
        for key in keys:
            if loop is None or loop.is_closed():
                self._epochs.pop(key, None)
                continue
            try:
                loop.call_soon_threadsafe(self._lose, key)
            except RuntimeError:  # the loop is closing
                pass

    def _lose(self, key: str) -> None:
        self._epochs.pop(key, None)
        self._on_lost(key)  # which logs and counts the loss, once (Replicas)

    async def committed(self, timeout: float) -> bool:
        return await self._writer.committed(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every queued write is committed; False on timeout."""
        return self._writer.flush(timeout)

    # -- reads ----------------------------------------------------------------------

    def load(self, key: str) -> StoredRequest | None:
        """The request kept under `key`, or None; UNAVAILABLE (STORE_UNAVAILABLE) when it
        cannot be read."""
        rows = self._read(f"{SELECT} WHERE request_id = %s", (key,))
        return self._stored(rows[0]) if rows else None

    def unfinished(self) -> Iterator[StoredRequest]:
        """The running requests this replica may resume at start, claimed: its own, and
        those whose lease expired (a replica gone); not those other replicas run."""
        yield from self.claim(None, mine=True)

    @staticmethod
    def _stored(row: tuple[Any, ...]) -> StoredRequest:
        stored = stored_request(row[:-2], row[-1])
        stored.record.epoch = row[-2]
        return stored

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of one query, on a connection made again once if it was lost (the server
        restarted since the last read)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._reader().execute(sql, parameters).fetchall()
                except (psycopg.Error, StoreUnreachable) as error:
                    self._drop_reader()  # made again on the next try, as the writer's is
                    if attempt == 2 or not isinstance(error, psycopg.OperationalError):
                        raise self._unreadable(error) from None
        raise AssertionError("unreachable")

    def _reader(self) -> psycopg.Connection[Any]:
        """The readers' connection (under the lock), made again when it was lost."""
        if self._db is None:
            self._db = self._connector.connect()
        return self._db

    def _drop_reader(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _unreadable(self, error: BaseException) -> Unavailable:
        return Unavailable(
            f"the request store cannot be read ({self._connector.line(error)})",
            reason=STORE_UNAVAILABLE,
            metadata={"store": self.path},
        )

    def close(self) -> None:
        """Commit what is queued, with the release of this replica's running requests: the
        other replicas (or the next scheduler) take them at once."""
        self._writer.put((RELEASE, (self.lease.replica,)))
        self._writer.close()
        self._sink.close()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
