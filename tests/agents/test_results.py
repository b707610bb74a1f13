"""A worker's finished subtasks: both stores replay what they were given, within their bound."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from agentmesh.agents.convert import outcome_to_proto
from agentmesh.agents.results import (
    MemoryResults,
    ResultStore,
    SqliteResults,
    Stored,
    input_digest,
    make_result_store,
)
from agentmesh.agents.subtask import Outcome
from agentmesh.usage import Usage
from agentmesh.v1 import worker_pb2
from agentmesh.wire import dict_to_struct, duration, usage_to_proto

MakeStore = Callable[[int], ResultStore]


def outcome(label: str) -> Outcome:
    return Outcome(
        output={"label": label, "score": 0.5, "spans": [{"start": 0, "end": 3}]},
        usage=Usage(input_tokens=12, output_tokens=4, cost_usd=0.0003),
        model="model-1",
        duration=0.25,
    )


def response(label: str) -> worker_pb2.ExecuteResponse:
    """The row's format, as every version wrote it: a serialised ExecuteResponse."""
    return worker_pb2.ExecuteResponse(
        output=dict_to_struct({"label": label, "score": 0.5, "spans": [{"start": 0, "end": 3}]}),
        usage=usage_to_proto(Usage(input_tokens=12, output_tokens=4, cost_usd=0.0003)),
        model="model-1",
        duration=duration(0.25),
    )


def stored(label: str) -> Stored:
    return Stored("sentiment", input_digest({"text": label}), outcome(label))


def test_an_outcome_is_written_as_the_response_earlier_versions_wrote() -> None:
    assert outcome_to_proto(outcome("positive")) == response("positive")


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    if request.param == "memory":
        return MemoryResults
    return lambda kept: SqliteResults(tmp_path / "results.db", kept)


def test_a_result_comes_back_as_it_was_put(make_store: MakeStore) -> None:
    store = make_store(10)
    store.put(("r1", "s1"), stored("positive"))
    assert store.get(("r1", "s1")) == stored("positive")
    assert store.get(("r1", "s2")) is None
    assert store.get(("r2", "s1")) is None
    store.close()


def test_a_key_keeps_the_first_response_it_was_given(make_store: MakeStore) -> None:
    store = make_store(10)
    store.put(("r1", "s1"), stored("positive"))
    store.put(("r1", "s1"), stored("negative"))
    for _ in range(2):
        assert store.get(("r1", "s1")) == stored("positive")
    store.close()


def test_past_the_bound_the_oldest_are_forgotten(make_store: MakeStore) -> None:
    store = make_store(3)
    for i in range(5):
        store.put(("r", f"s{i}"), stored(str(i)))
    store.put(("r", "s4"), stored("again"))  # a key already kept takes no room
    assert [store.get(("r", f"s{i}")) is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    store.close()


def test_the_sqlite_file_keeps_its_rows_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store = SqliteResults(path, 10)
    for i in range(4):
        store.put(("r", f"s{i}"), stored(str(i)))
    store.close()

    reopened = SqliteResults(path, 10)
    assert [reopened.get(("r", f"s{i}")) for i in range(4)] == [stored(str(i)) for i in range(4)]
    reopened.close()

    # A smaller bound applies from the next put, oldest first.
    smaller = SqliteResults(path, 2)
    smaller.put(("r", "s4"), stored("4"))
    assert [smaller.get(("r", f"s{i}")) is not None for i in range(5)] == [
        False,
        False,
        False,
        True,
        True,
    ]
    smaller.close()


def test_a_put_is_committed_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store = SqliteResults(path, 10)
    store.put(("r1", "s1"), stored("positive"))
    # Another connection, as a restarted process would open, sees it while the store is open.
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        [(raw,)] = other.execute(
            "SELECT response FROM results WHERE request_id = 'r1' AND subtask_id = 's1'"
        ).fetchall()
    finally:
        other.close()
    assert worker_pb2.ExecuteResponse.FromString(raw) == response("positive")
    store.close()


def test_an_empty_path_keeps_results_in_memory_and_a_path_in_a_new_file(tmp_path: Path) -> None:
    memory = make_result_store("", 5)
    assert isinstance(memory, MemoryResults) and memory.kept == 5
    path = tmp_path / "nested" / "dir" / "worker-a.db"
    sqlite = make_result_store(str(path), 7)
    assert isinstance(sqlite, SqliteResults) and sqlite.kept == 7
    assert path.is_file()
    sqlite.close()


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="AGENTMESH_WORKER_STORE"):
        make_result_store(str(blocker / "results.db"), 10)


def test_a_result_knows_the_work_it_answers(make_store: MakeStore) -> None:
    store = make_store(10)
    store.put(("r1", "s1"), stored("positive"))
    kept = store.get(("r1", "s1"))
    assert kept is not None
    assert kept.answers("sentiment", input_digest({"text": "positive"}))
    assert not kept.answers("summarize", input_digest({"text": "positive"}))
    assert not kept.answers("sentiment", input_digest({"text": "negative"}))
    store.close()


def test_the_input_digest_ignores_key_order_only() -> None:
    assert input_digest({"a": 1, "b": "x"}) == input_digest({"b": "x", "a": 1})
    assert input_digest({"a": 1}) != input_digest({"a": 2})
    assert input_digest({"text": "é"}) != input_digest({"text": "e"})


OLD_SCHEMA = """
CREATE TABLE results (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    subtask_id TEXT NOT NULL,
    response BLOB NOT NULL,
    UNIQUE (request_id, subtask_id)
);
"""


def test_a_file_of_the_earlier_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as old:
        old.executescript(OLD_SCHEMA)
        for request_id in ("", "r1"):  # an empty key was how the earlier worker went wrong
            old.execute(
                "INSERT INTO results (request_id, subtask_id, response) VALUES (?, ?, ?)",
                (request_id, request_id, response("old").SerializeToString()),
            )
    old.close()

    store = SqliteResults(path, 10)
    # Rows that cannot say what they answered are dropped, not replayed to the wrong call.
    assert store.get(("", "")) is None and store.get(("r1", "r1")) is None
    store.put(("r1", "r1"), stored("new"))
    store.close()
    reopened = SqliteResults(path, 10)
    assert reopened.get(("r1", "r1")) == stored("new")
    reopened.close()
