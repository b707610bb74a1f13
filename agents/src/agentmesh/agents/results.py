"""Finished subtasks a worker remembers, so that a repeat is answered without running again.

A result is kept under (request id, subtask id), together with the
capability and a digest of the input it answered: a repeat is only a
repeat when all four match, and a call that reuses the ids for other work
must be refused, never answered with this output. The window is bounded:
past `kept` results, the oldest is forgotten. `MemoryResults` keeps them in
the process; `SqliteResults` keeps them in a file, so that a worker
restarted after a crash still answers a subtask it finished before (a
scheduler that lost the response dispatches it again). A store keeps the
first response put for a key: the answer a worker gave once is the one it
replays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentmesh.agents.convert import outcome_from_proto, outcome_to_proto
from agentmesh.agents.subtask import Outcome
from agentmesh.v1 import worker_pb2

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(request id, subtask id)."""


def input_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of an input as canonical JSON: the same object gives the same digest."""
    canonical = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    """One finished subtask: what was asked (capability, input digest) and the answer."""

    capability: str
    input_digest: str
    outcome: Outcome

    def answers(self, capability: str, digest: str) -> bool:
        """Whether this is the result of the same work, not just of the same ids."""
        return (self.capability, self.input_digest) == (capability, digest)


class ResultStore(Protocol):
    """Where a worker keeps the responses of the subtasks it finished."""

    def get(self, key: Key) -> Stored | None: ...

    def put(self, key: Key, stored: Stored) -> None:
        """Remember a finished subtask (durably, for a store that persists) before it returns."""
        ...

    def close(self) -> None: ...


class MemoryResults:
    """The last `kept` results, in this process only."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self._results: OrderedDict[Key, Stored] = OrderedDict()

    def get(self, key: Key) -> Stored | None:
        return self._results.get(key)

    def put(self, key: Key, stored: Stored) -> None:
        self._results.setdefault(key, stored)
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
    capability TEXT NOT NULL DEFAULT '',
    input_digest TEXT NOT NULL DEFAULT '',
    UNIQUE (request_id, subtask_id)
);
"""

# Files written before results carried their capability and input digest lack the two
# columns. Their rows cannot be told apart from another call reusing the same ids, so
# they are dropped: a repeat of one of them runs again rather than risk a wrong answer.
MIGRATION = """
ALTER TABLE results ADD COLUMN capability TEXT NOT NULL DEFAULT '';
ALTER TABLE results ADD COLUMN input_digest TEXT NOT NULL DEFAULT '';
DELETE FROM results;
"""


class SqliteResults:
    """The last `kept` results in one SQLite file (WAL), kept across restarts.

    Writes are committed inline, on the caller's thread: in WAL mode with
    synchronous=NORMAL a commit appends to the log without waiting for the
    disk, so it survives the process being killed (not a power loss) and
    costs the event loop tens of microseconds; about one write in a few
    hundred also checkpoints the log into the file, which takes milliseconds.
    A file of the earlier schema (without capability and input digest) is
    migrated when it is opened, dropping the rows that cannot be checked.
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
            self._migrate()
            (self._rows,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        except (OSError, sqlite3.Error) as error:
            raise ValueError(
                f"cannot open the worker's result store {str(self.path)!r} "
                f"(AGENTMESH_WORKER_STORE): {error}"
            ) from None

    def _migrate(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        if "input_digest" in columns:
            return
        (dropped,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        # executescript commits first and runs the script as given: wrap it in one transaction.
        self._db.executescript(f"BEGIN;\n{MIGRATION}\nCOMMIT;")
        log.warning(
            "migrated the worker's result store; results without their input digest dropped",
            extra={"path": str(self.path), "dropped": dropped},
        )

    def get(self, key: Key) -> Stored | None:
        row = self._db.execute(
            "SELECT capability, input_digest, response FROM results"
            " WHERE request_id = ? AND subtask_id = ?",
            key,
        ).fetchone()
        if row is None:
            return None
        # Rows hold a serialised ExecuteResponse, as every earlier version wrote them.
        response = worker_pb2.ExecuteResponse.FromString(row[2])
        return Stored(row[0], row[1], outcome_from_proto(response))

    def put(self, key: Key, stored: Stored) -> None:
        with self._db:  # one transaction, committed on leaving
            added = self._db.execute(
                "INSERT INTO results (request_id, subtask_id, response, capability, input_digest)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    *key,
                    outcome_to_proto(stored.outcome).SerializeToString(),
                    stored.capability,
                    stored.input_digest,
                ),
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
