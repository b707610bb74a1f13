"""Finished subtasks a worker remembers, so that a repeat is answered without running again.

A result is keyed by (request id, subtask id) and the window is bounded:
past `kept` results, the oldest is forgotten. `MemoryResults` keeps them in
the process; `SqliteResults` keeps them in a file, so that a worker
restarted after a crash still answers a subtask it finished before (a
scheduler that lost the response dispatches it again). A store keeps the
first response put for a key: the answer a worker gave once is the one it
replays.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from agentmesh.v1 import worker_pb2

Key = tuple[str, str]
"""(request id, subtask id)."""


class ResultStore(Protocol):
    """Where a worker keeps the responses of the subtasks it finished."""

    def get(self, key: Key) -> worker_pb2.ExecuteResponse | None: ...

    def put(self, key: Key, response: worker_pb2.ExecuteResponse) -> None:
        """Remember a finished subtask (durably, for a store that persists) before it returns."""
        ...

    def close(self) -> None: ...


class MemoryResults:
    """The last `kept` results, in this process only."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._results: OrderedDict[Key, worker_pb2.ExecuteResponse] = OrderedDict()

    def get(self, key: Key) -> worker_pb2.ExecuteResponse | None:
        return self._results.get(key)

    def put(self, key: Key, response: worker_pb2.ExecuteResponse) -> None:
        self._results.setdefault(key, response)
        while len(self._results) > self.kept:
            self._results.popitem(last=False)

    def close(self) -> None:
        self._results.clear()


SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    subtask_id TEXT NOT NULL,
    response BLOB NOT NULL,
    UNIQUE (request_id, subtask_id)
);
"""


class SqliteResults:
    """The last `kept` results in one SQLite file (WAL), kept across restarts.

    Writes are committed inline, on the caller's thread: in WAL mode with
    synchronous=NORMAL a commit appends to the log without waiting for the
    disk, so it survives the process being killed (not a power loss) and
    costs the event loop tens of microseconds; about one write in a few
    hundred also checkpoints the log into the file, which takes milliseconds.
    """

    def __init__(self, path: str | Path, kept: int) -> None:
        self.path = Path(path)
        self.kept = kept
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            (self._rows,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        except (OSError, sqlite3.Error) as error:
            raise ValueError(
                f"cannot open the worker's result store {str(self.path)!r} "
                f"(AGENTMESH_WORKER_STORE): {error}"
            ) from None

    def get(self, key: Key) -> worker_pb2.ExecuteResponse | None:
        row = self._db.execute(
            "SELECT response FROM results WHERE request_id = ? AND subtask_id = ?", key
        ).fetchone()
        return None if row is None else worker_pb2.ExecuteResponse.FromString(row[0])

    def put(self, key: Key, response: worker_pb2.ExecuteResponse) -> None:
        with self._db:  # one transaction, committed on leaving
            added = self._db.execute(
                "INSERT INTO results (request_id, subtask_id, response) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (*key, response.SerializeToString()),
            ).rowcount
            excess = max(self._rows + added - self.kept, 0)
            if excess:
                # seq grows with each insert: the lowest are the oldest.
                self._db.execute(
                    "DELETE FROM results WHERE seq IN"
                    " (SELECT seq FROM results ORDER BY seq LIMIT ?)",
                    (excess,),
                )
        self._rows += added - excess

    def close(self) -> None:
        self._db.close()


def make_result_store(path: str, kept: int) -> ResultStore:
    """A SQLite store at `path`, or one in memory when `path` is empty."""
    return SqliteResults(path, kept) if path else MemoryResults(kept)
