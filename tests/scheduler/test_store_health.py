"""A store that cannot write: reported down, nothing acknowledged, writes kept and retried
(both stores).

Also: old store files are migrated, damaged ones refused at open (SQLite).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from agentmesh.errors import Unavailable
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.records import RequestRecord, new_record
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.scheduler.store import SqliteStore, StoreError
from tests.scheduler.test_request_ids import PLAN, TEXT, Flaky
from tests.support.fakes import FakeClock, FakeTransport
from tests.support.stores import AnyStore, Stores


class Watch:
    """The store's observer: states reported and failures counted."""

    def __init__(self) -> None:
        self.states: list[bool] = []
        self.failures = 0

    def store_write_failed(self) -> None:
        self.failures += 1

    def store_state(self, up: bool) -> None:
        self.states.append(up)


def read_only(store: SqliteStore, on: bool) -> None:
    """Make SQLite refuse writes on the store's connection (root ignores file modes)."""
    with store._lock:
        store._db.execute(f"PRAGMA query_only={'ON' if on else 'OFF'}")


async def until(condition, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_failed_writes_are_kept_retried_and_acknowledged_only_once_committed(
    stores: Stores,
) -> None:
    watch = Watch()
    store = stores.open(observer=watch)
    stores.read_only(store, True)
    store.save_request(new_record("kept", PLAN, dict(TEXT), 0, 1.0), deadline=4e9)
    assert not await store.committed(0.2)
    # PostgreSQL: first the sessions ended, then, connected again, the read-only database.
    await until(lambda: stores.read_only_problem in store.problem, "the store's refusal")
    assert not store.up and watch.states == [False] and watch.failures >= 1

    stores.read_only(store, False)
    assert await store.committed(10)
    assert store.up and watch.states == [False, True]
    stored = store.load("kept")
    assert stored is not None and list(stored.record.subtasks) == ["first", "second"]
    store.close()


async def test_a_deleted_store_file_is_a_failure_not_a_new_file(tmp_path: Path) -> None:
    watch = Watch()
    path = tmp_path / "s.db"
    store = SqliteStore(path, observer=watch)
    store.save_request(new_record("before", PLAN, dict(TEXT), 0, 1.0), deadline=4e9)
    assert await store.committed(5)
    shutil.rmtree(tmp_path)
    store.save_request(new_record("after", PLAN, dict(TEXT), 0, 1.0), deadline=4e9)
    assert not await store.committed(0.2)
    assert not store.up and "deleted or replaced" in store.problem
    assert watch.states == [False]
    store.close()


def make_core(store: AnyStore) -> SchedulerCore:
    core = SchedulerCore(SchedulerConfig(), FakeTransport(Flaky()), clock=FakeClock(), store=store)
    core.register(WorkerSpec("w", "127.0.0.1:1", frozenset({"summarize", "sentiment"}), 4))
    return core


async def test_nothing_is_acknowledged_before_the_request_is_committed(stores: Stores) -> None:
    store = stores.open()
    core = make_core(store)
    planned: list[RequestRecord] = []
    stores.read_only(store, True)
    submit = asyncio.create_task(
        core.submit("slow-disk", Source(plan=PLAN), dict(TEXT), on_plan=planned.append)
    )
    await until(lambda: not store.up, "the store to be reported down")
    assert not planned and not submit.done()
    assert (await core.get("slow-disk")).state == "RUNNING"
    # New work is refused at once while the store is down.
    with pytest.raises(Unavailable) as refused:
        await core.submit("another", Source(plan=PLAN), dict(TEXT))
    assert refused.value.reason == "STORE_UNAVAILABLE"
    assert refused.value.metadata["store"] == store.path

    stores.read_only(store, False)
    record = await submit
    assert planned == [record] and record.state == "SUCCEEDED"
    stored = store.load("slow-disk")
    assert stored is not None and stored.record.state == "SUCCEEDED"
    store.close()


async def test_a_request_the_store_cannot_take_in_time_is_refused_unavailable(
    stores: Stores,
) -> None:
    store = stores.open()
    core = make_core(store)
    planned: list[RequestRecord] = []
    stores.read_only(store, True)
    with pytest.raises(Unavailable) as refused:
        await core.submit(
            "never-stored", Source(plan=PLAN), dict(TEXT), timeout=0.3, on_plan=planned.append
        )
    assert refused.value.reason == "STORE_UNAVAILABLE"
    record = await core.get("never-stored")
    assert record.state == "FAILED" and record.error is not None
    assert (record.error.code, record.error.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")
    assert not planned  # never acknowledged, and no subtask ran
    assert core.dispatcher.transport.calls == []  # type: ignore[attr-defined]
    stores.read_only(store, False)
    assert await store.committed(10)
    again = await core.submit("never-stored", Source(plan=PLAN), dict(TEXT))
    assert again.state == "SUCCEEDED"  # a retryable failure: the repeat runs it
    store.close()


OLD_SCHEMA = """
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY, plan TEXT NOT NULL, input TEXT NOT NULL,
    priority INTEGER NOT NULL, budget REAL NOT NULL, deadline REAL NOT NULL,
    state TEXT NOT NULL, answer TEXT, error TEXT, created_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE subtasks (
    request_id TEXT NOT NULL, subtask_id TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (request_id, subtask_id)
);
INSERT INTO requests VALUES ('old', '{"steps": [], "answer": {}, "workflow": "w"}', '{}',
    0, 0.0, 4e9, 'SUCCEEDED', '{"a": 1}', NULL, 1.0, 2.0);
"""


def test_a_store_file_from_before_fingerprints_opens_and_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    db.close()
    store = SqliteStore(path)
    old = store.load("old")
    assert old is not None and old.record.answer == {"a": 1} and old.fingerprint == ""
    store.save_request(new_record("new", PLAN, dict(TEXT), 0, 1.0), 4e9, "f" * 64)
    assert store.flush()
    new = store.load("new")
    assert new is not None and new.fingerprint == "f" * 64
    store.close()


def damaged(path: Path) -> None:
    """A store with a valid header whose later pages are overwritten."""
    store = SqliteStore(path)
    for i in range(200):
        store.save_request(new_record(f"r{i}", PLAN, {"text": "x" * 500}, 0, 1.0), 4e9)
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(4096 * 2)
        file.write(b"\xa5" * (size - 4096 * 2))


@pytest.mark.parametrize("kind", ["garbage", "damaged-pages"])
def test_a_damaged_store_is_refused_naming_the_file_and_what_to_do(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "s.db"
    if kind == "garbage":
        path.write_bytes(b"not a database at all\n" * 200)
    else:
        damaged(path)
    with pytest.raises(StoreError) as refused:
        SqliteStore(path)
    message = str(refused.value)
    assert str(path) in message and "AGENTMESH_STORE" in message
    assert "move it aside" in message and "\n" not in message
