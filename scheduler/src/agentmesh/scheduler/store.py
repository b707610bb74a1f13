"""Durable requests: every request, its plan and every subtask transition, in SQLite.

`SqliteStore` is the embedded default (one file, WAL). Writes are queued by
the event loop and committed by one writer thread in small groups
(`storewriter.GroupWriter`), so persisting a transition costs the loop a
queue put. What the scheduler acknowledges it first waits for: a request's
rows are committed before its plan or result is sent, and its final state
before its result is. Subtask transitions in between are not waited for: a
crash can lose the last few milliseconds of them, which recovery re-runs
(and the workers' idempotency answers from their store). `Store` is the
interface another database can implement for several scheduler replicas.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from agentmesh.scheduler.plans import plan_from_dict, plan_to_dict
from agentmesh.scheduler.records import ErrorRecord, RequestRecord, SubtaskRecord
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.storewriter import GroupWriter, StoreObserver
from agentmesh.scheduler.tiers import Budget
from agentmesh.tiers import Tier
from agentmesh.usage import Usage

log = logging.getLogger(__name__)


@dataclass
class StoredRequest:
    """A request as the store returns it."""

    record: RequestRecord
    #: Wall-clock deadline (time.time()).
    deadline: float
    #: Digest of the parameters it was submitted with; empty for rows from
    #: before fingerprints were kept.
    fingerprint: str


class Store(Protocol):
    """Where requests are kept durably."""

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

    def save_subtask(self, request_id: str, subtask: SubtaskRecord) -> None: ...

    def finish_request(self, record: RequestRecord) -> None: ...

    async def committed(self, timeout: float) -> bool:
        """Wait until every write queued so far is committed; False after `timeout` seconds."""
        ...

    def load(self, request_id: str) -> StoredRequest | None: ...

    def unfinished(self) -> Iterator[StoredRequest]:
        """Every request not finished yet."""
        ...

    def close(self) -> None: ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
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

COLUMNS = (
    "request_id, plan, input, priority, budget, deadline, state, answer, error,"
    " created_at, finished_at, fingerprint, tenant"
)


class StoreError(Exception):
    """The store cannot be used at start: its message says which file and what to do."""


class SqliteStore:
    """Requests in one SQLite file (":memory:" keeps them in this process only).

    Raises StoreError when the file cannot be opened or fails its integrity
    check, rather than serving from a damaged store.
    """

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
            self._db, self._lock, self.path, flush_interval=flush_interval, observer=observer
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
                (
                    record.request_id,
                    json.dumps(plan_to_dict(record.plan)),
                    json.dumps(record.input),
                    record.priority,
                    record.budget.limit if record.budget else 0.0,
                    deadline,
                    record.state,
                    record.created_at,
                    fingerprint,
                    record.tenant,
                ),
            )
        )
        # A subtask without a row is PENDING (`_stored`): a new request writes none, and
        # a request run again keeps only the rows of what it kept.
        self._writer.put(("DELETE FROM subtasks WHERE request_id = ?", (record.request_id,)))
        for subtask in record.subtasks.values():
            if subtask.state is not SubtaskState.PENDING:
                self.save_subtask(record.request_id, subtask)

    def save_subtask(self, request_id: str, subtask: SubtaskRecord) -> None:
        self._writer.put(
            (
                "INSERT OR REPLACE INTO subtasks (request_id, subtask_id, record) VALUES (?, ?, ?)",
                (request_id, subtask.id, json.dumps(_subtask_row(subtask))),
            )
        )

    def finish_request(self, record: RequestRecord) -> None:
        self._writer.put(
            (
                "UPDATE requests SET state = ?, answer = ?, error = ?, finished_at = ?"
                " WHERE request_id = ?",
                (
                    record.state,
                    json.dumps(record.answer) if record.answer is not None else None,
                    json.dumps(asdict(record.error)) if record.error else None,
                    record.finished_at,
                    record.request_id,
                ),
            )
        )

    async def committed(self, timeout: float) -> bool:
        return await self._writer.committed(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every queued write is committed; False on timeout."""
        return self._writer.flush(timeout)

    # -- reads ----------------------------------------------------------------------

    def load(self, request_id: str) -> StoredRequest | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM requests WHERE request_id = ?", (request_id,)
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
        (
            request_id,
            plan,
            data,
            priority,
            budget,
            deadline,
            state,
            answer,
            error,
            created,
            finished,
            fingerprint,
            tenant,
        ) = row
        record = RequestRecord(
            request_id=request_id,
            plan=plan_from_dict(json.loads(plan)),
            input=json.loads(data),
            priority=priority,
            # Kept as the state's name, as every version wrote it.
            state=RequestState(state),
            answer=json.loads(answer) if answer else None,
            error=ErrorRecord(**json.loads(error)) if error else None,
            created_at=created,
            finished_at=finished,
            budget=Budget(budget) if budget > 0 else None,
            tenant=tenant,
        )
        for (raw,) in self._db.execute(
            "SELECT record FROM subtasks WHERE request_id = ?", (request_id,)
        ):
            fields = json.loads(raw)
            fields["usage"] = Usage(**fields["usage"])
            fields["state"] = SubtaskState(fields["state"])
            fields["tier"] = Tier(fields.get("tier", Tier.UNSPECIFIED))
            if fields["error"]:
                fields["error"] = ErrorRecord(**fields["error"])
            record.subtasks[fields["id"]] = SubtaskRecord(**fields)
        # Keep the plan's step order; a step with no row has not started.
        record.subtasks = {
            s.id: record.subtasks.get(s.id) or SubtaskRecord(s.id, s.capability)
            for s in record.plan.steps
        }
        if record.budget is not None:
            # What the finished subtasks cost stays spent when the request resumes.
            record.budget.spent = sum(
                s.usage.cost_usd
                for s in record.subtasks.values()
                if s.state == SubtaskState.SUCCEEDED
            )
        return StoredRequest(record, deadline, fingerprint or "")

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


def _subtask_row(subtask: SubtaskRecord) -> dict[str, Any]:
    """A subtask as JSON-ready data; by hand, as `asdict` deep-copies the output each time."""
    row = dict(vars(subtask))
    row["usage"] = vars(subtask.usage)
    row["error"] = asdict(subtask.error) if subtask.error else None
    return row
