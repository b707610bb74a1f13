"""Durable requests: every request, its plan and every subtask transition, in SQLite.

`SqliteStore` is the embedded default (one file, WAL). Writes are queued by
the event loop and committed by one writer thread in small groups (every
few milliseconds), so persisting a transition costs the loop a queue put;
what a crash can lose is the last few milliseconds of transitions, which
recovery then re-runs (and the workers' idempotency answers from their
store). `Store` is the interface another database can implement for
several scheduler replicas.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from agentmesh.agents.backend import Usage
from agentmesh.scheduler.executor import ErrorRecord, RequestRecord, SubtaskRecord
from agentmesh.scheduler.plans import plan_from_dict, plan_to_dict
from agentmesh.scheduler.tiers import Budget


class Store(Protocol):
    def save_request(self, record: RequestRecord, deadline: float) -> None:
        """Record a new request with its plan; `deadline` is wall-clock time."""
        ...

    def save_subtask(self, request_id: str, subtask: SubtaskRecord) -> None: ...

    def finish_request(self, record: RequestRecord) -> None: ...

    def load(self, request_id: str) -> RequestRecord | None: ...

    def unfinished(self) -> Iterator[tuple[RequestRecord, float]]:
        """Every request not finished yet, with its wall-clock deadline."""
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
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS requests_running ON requests (state) WHERE state = 'RUNNING';
CREATE TABLE IF NOT EXISTS subtasks (
    request_id TEXT NOT NULL,
    subtask_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (request_id, subtask_id)
);
"""

_STOP = object()


class SqliteStore:
    """Requests in one SQLite file (":memory:" keeps them in this process only)."""

    def __init__(self, path: str | Path, *, flush_interval: float = 0.005) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection, used by the writer thread and (under the lock) by readers.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._writes: queue.Queue[Any] = queue.Queue()
        self._flush_interval = flush_interval
        self._writer = threading.Thread(target=self._write_forever, name="store", daemon=True)
        self._writer.start()

    # -- writes (queued) -------------------------------------------------------------

    def save_request(self, record: RequestRecord, deadline: float) -> None:
        self._writes.put(
            (
                "INSERT OR REPLACE INTO requests (request_id, plan, input, priority, budget,"
                " deadline, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.request_id,
                    json.dumps(plan_to_dict(record.plan)),
                    json.dumps(record.input),
                    record.priority,
                    record.budget.limit if record.budget else 0.0,
                    deadline,
                    record.state,
                    record.created_at,
                ),
            )
        )
        for subtask in record.subtasks.values():
            self.save_subtask(record.request_id, subtask)

    def save_subtask(self, request_id: str, subtask: SubtaskRecord) -> None:
        self._writes.put(
            (
                "INSERT OR REPLACE INTO subtasks (request_id, subtask_id, record) VALUES (?, ?, ?)",
                (request_id, subtask.id, json.dumps(_subtask_row(subtask))),
            )
        )

    def finish_request(self, record: RequestRecord) -> None:
        self._writes.put(
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

    def _write_forever(self) -> None:
        while True:
            batch = [self._writes.get()]
            try:
                while True:
                    batch.append(self._writes.get(timeout=self._flush_interval))
                    if len(batch) >= 1000:
                        break
            except queue.Empty:
                pass
            markers = [item for item in batch if isinstance(item, _Marker)]
            with self._lock:
                self._db.execute("BEGIN")
                for item in batch:
                    if isinstance(item, tuple):
                        self._db.execute(*item)
                self._db.execute("COMMIT")
            for marker in markers:
                marker.done.set()
            if _STOP in batch:
                return

    def flush(self) -> None:
        """Wait until every queued write is committed."""
        done = threading.Event()
        self._writes.put(_Marker(done))
        done.wait(10)

    # -- reads ----------------------------------------------------------------------

    def load(self, request_id: str) -> RequestRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                return None
            return self._record(row)[0]

    def unfinished(self) -> Iterator[tuple[RequestRecord, float]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM requests WHERE state = 'RUNNING'").fetchall()
            records = [self._record(row) for row in rows]
        yield from records

    def _record(self, row: tuple[Any, ...]) -> tuple[RequestRecord, float]:
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
        ) = row
        record = RequestRecord(
            request_id=request_id,
            plan=plan_from_dict(json.loads(plan)),
            input=json.loads(data),
            priority=priority,
            state=state,
            answer=json.loads(answer) if answer else None,
            error=ErrorRecord(**json.loads(error)) if error else None,
            created_at=created,
            finished_at=finished,
            budget=Budget(budget) if budget > 0 else None,
        )
        for (raw,) in self._db.execute(
            "SELECT record FROM subtasks WHERE request_id = ?", (request_id,)
        ):
            fields = json.loads(raw)
            fields["usage"] = Usage(**fields["usage"])
            if fields["error"]:
                fields["error"] = ErrorRecord(**fields["error"])
            record.subtasks[fields["id"]] = SubtaskRecord(**fields)
        # Keep the plan's step order.
        record.subtasks = {s.id: record.subtasks[s.id] for s in record.plan.steps}
        return record, deadline

    def close(self) -> None:
        self._writes.put(_STOP)
        self._writer.join(10)
        self._db.close()


def _subtask_row(subtask: SubtaskRecord) -> dict[str, Any]:
    """A subtask as JSON-ready data; by hand, as `asdict` deep-copies the output each time."""
    row = dict(vars(subtask))
    row["usage"] = vars(subtask.usage)
    row["error"] = asdict(subtask.error) if subtask.error else None
    return row


class _Marker:
    """Set once the writer has committed everything queued before it."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done
