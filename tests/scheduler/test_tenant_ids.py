"""Each tenant has its own space of request ids: tenant A's "ticket-124" and tenant B's are
two requests, in memory, in both stores, across a restart and a takeover, and to workers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from agentmesh.errors import AlreadyExists, NotFound, PermissionDenied
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.core import Source
from agentmesh.scheduler.pgconnect import migrations
from agentmesh.scheduler.pgstore import PostgresStore
from agentmesh.scheduler.records import new_record, request_key, split_key
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.scheduler.requests import fingerprint
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.store import SqliteStore
from agentmesh.server.tokens import Caller
from tests.scheduler.test_pgreplicas import expire, owners
from tests.scheduler.test_request_ids import PLAN, Flaky, make_core
from tests.scheduler.test_store_health import until
from tests.support.stores import Stores

A = {"text": "Tenant A's parcel came late."}
B = {"text": "Tenant B's invoice is wrong."}


class Echo(Flaky):
    """Echoes its input, and keeps the request ids the worker was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, worker: WorkerRecord, call: SubtaskCall, attempt: int) -> ExecuteResult:
        self.sent.append((call.key, call.request_id, call.subtask_id))
        return ExecuteResult({"text": call.input["text"]})


def test_a_key_is_the_id_in_its_tenants_space_and_splits_back() -> None:
    assert request_key("", "ticket-124") == "ticket-124"  # as every request was keyed
    assert request_key("acme", "ticket-124") == "acme/ticket-124"
    # A tenant may hold the separator; an id never does: split at the last one.
    for tenant in ("", "acme", "a/b", "x/"):
        assert split_key(request_key(tenant, "t:1.2-3")) == (tenant, "t:1.2-3")


async def test_two_tenants_run_the_same_id_as_two_requests(tmp_path: Path) -> None:
    worker = Echo()
    core = make_core(tmp_path / "s.db", worker)
    # B first: before, A's id was then taken (A was told NOT_FOUND).
    b = await core.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="b")
    a = await core.submit("ticket-124", Source(plan=PLAN), dict(A), tenant="a")
    assert a.state == b.state == RequestState.SUCCEEDED
    assert a.request_id == b.request_id == "ticket-124"
    assert (a.tenant, a.answer) == ("a", {"label": A["text"]})
    assert (b.tenant, b.answer) == ("b", {"label": B["text"]})
    # Workers are sent each tenant's key: two tenants' subtasks are different work there.
    assert {key for key, _, _ in worker.sent} == {"a/ticket-124", "b/ticket-124"}
    assert {request_id for _, request_id, _ in worker.sent} == {"ticket-124"}
    assert len(worker.sent) == 4

    # Each tenant's repeat is its own request's: replayed, nothing runs again.
    again_a = await core.submit("ticket-124", Source(plan=PLAN), dict(A), tenant="a")
    again_b = await core.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="b")
    assert again_a is a and again_b is b and len(worker.sent) == 4
    # Reused with the other tenant's parameters: refused within the tenant's own space.
    with pytest.raises(AlreadyExists):
        await core.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="a")

    # Each reads its own; a third tenant, and no tenant, are told what nobody used.
    assert (await core.read("ticket-124", tenant="a")).answer == {"label": A["text"]}
    assert (await core.read("ticket-124", tenant="b")).answer == {"label": B["text"]}
    with pytest.raises(NotFound) as other:
        await core.read("ticket-124", tenant="c")
    with pytest.raises(NotFound) as nobody:
        await core.read("ticket-999", tenant="c")
    assert other.value.message == nobody.value.message.replace("999", "124")
    with pytest.raises(NotFound):
        await core.read("ticket-124")
    # A key is no request id: it reads nothing, not even with no tenant.
    with pytest.raises(NotFound):
        await core.read("a/ticket-124")


async def test_the_store_keeps_two_tenants_requests_of_one_id_apart_across_a_restart(
    stores: Stores,
) -> None:
    core = make_core(stores, Echo())
    await core.submit("ticket-124", Source(plan=PLAN), dict(A), tenant="a")
    await core.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="b")
    assert core.store is not None
    core.store.close()
    worker = Echo()
    restarted = make_core(stores, worker)
    a = await restarted.read("ticket-124", tenant="a")
    b = await restarted.read("ticket-124", tenant="b")
    assert (a.request_id, a.tenant, a.answer) == ("ticket-124", "a", {"label": A["text"]})
    assert (b.request_id, b.tenant, b.answer) == ("ticket-124", "b", {"label": B["text"]})
    assert a.subtasks["first"].output == {"text": A["text"]}
    assert b.subtasks["first"].output == {"text": B["text"]}
    again = await restarted.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="b")
    assert again.answer == b.answer and worker.sent == []
    assert stores.count("requests") == 2


async def test_two_tenants_unfinished_requests_of_one_id_both_resume(stores: Stores) -> None:
    """Resumed after a restart (SQLite), or claimed by another replica once the first one's
    leases are released (PostgreSQL: the store reopened is another replica)."""
    store = stores.open()
    for tenant, data in (("a", A), ("b", B)):
        record = new_record("ticket-124", PLAN, dict(data), 0, 1.0, tenant=tenant)
        record.subtasks["first"].state = SubtaskState.SUCCEEDED
        record.subtasks["first"].output = {"text": f"kept: {data['text']}"}
        store.save_request(record, 4e9, fingerprint(Source(plan=PLAN).canonical(), data, 0, 0.0))
    assert store.flush()
    store.close()

    worker = Echo()
    core = make_core(stores, worker)
    assert core.recover() == 2
    a = await core.submit("ticket-124", Source(plan=PLAN), dict(A), tenant="a")
    b = await core.submit("ticket-124", Source(plan=PLAN), dict(B), tenant="b")
    assert a.answer == {"label": f"kept: {A['text']}"}
    assert b.answer == {"label": f"kept: {B['text']}"}
    # Only the step that had not run, once for each tenant, each under its own key.
    assert sorted(worker.sent) == [
        ("a/ticket-124", "ticket-124", "second"),
        ("b/ticket-124", "ticket-124", "second"),
    ]
    assert core.store is not None and await core.store.committed(5)
    for tenant, answer in (("a", a.answer), ("b", b.answer)):
        stored = core.store.load(request_key(tenant, "ticket-124"))
        assert stored is not None and stored.record.state == RequestState.SUCCEEDED
        assert stored.record.answer == answer


async def test_a_takeover_claims_and_fences_each_tenants_request_apart(
    postgres_url: str,
) -> None:
    first = PostgresStore(postgres_url, replica="first", lease=0.3)
    second = PostgresStore(postgres_url, replica="second", lease=30)
    lost: list[str] = []
    first.watch(lost.append)
    records = {t: new_record("ticket-124", PLAN, {"text": t}, 0, 1.0, tenant=t) for t in ("a", "b")}
    for record in records.values():
        first.save_request(record, deadline=4e9)
    assert await first.committed(5)
    assert owners(postgres_url) == {"a/ticket-124": ("first", 1), "b/ticket-124": ("first", 1)}

    expire(postgres_url, "first")
    claimed = second.claim()
    assert sorted((s.record.tenant, s.record.request_id) for s in claimed) == [
        ("a", "ticket-124"),
        ("b", "ticket-124"),
    ]
    # The old owner's late writes of both are refused, and it is told each key.
    for record in records.values():
        late = record.subtasks["first"]
        late.state, late.output = SubtaskState.SUCCEEDED, {"text": "late"}
        first.save_subtask(record.key, late)
    assert await first.committed(5)
    await until(lambda: sorted(lost) == ["a/ticket-124", "b/ticket-124"], "both lost")
    # The new owner finishes one tenant's; the other's stays running.
    mine = next(s for s in claimed if s.record.tenant == "b").record
    mine.state, mine.answer = RequestState.SUCCEEDED, {"label": "b's"}
    second.finish_request(mine)
    assert second.flush(5)
    a = second.load("a/ticket-124")
    b = second.load("b/ticket-124")
    assert a is not None and a.record.state == RequestState.RUNNING
    assert a.record.subtasks["first"].state == SubtaskState.PENDING
    assert b is not None and b.record.answer == {"label": "b's"}
    first.close()
    second.close()


def _old_sqlite_file(path: Path) -> None:
    """A store file as schedulers wrote it before tenants had their own ids: a tenant's
    row keyed by its bare id, with a subtask row; one of no tenant; user_version 0."""
    store = SqliteStore(path)
    for tenant, request_id in (("a", "old-1"), ("", "old-2")):
        record = new_record(request_id, PLAN, {"text": request_id}, 0, 1.0, tenant=tenant)
        record.subtasks["first"].state = SubtaskState.SUCCEEDED
        record.subtasks["first"].output = {"text": "done"}
        store.save_request(record, 4e9, "f" * 64)
    assert store.flush()
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE subtasks SET request_id = 'old-1' WHERE request_id = 'a/old-1'")
        db.execute("UPDATE requests SET request_id = 'old-1' WHERE request_id = 'a/old-1'")
        db.execute("PRAGMA user_version = 0")
    db.close()


async def test_a_store_file_from_before_tenant_ids_upgrades_and_keeps_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _old_sqlite_file(path)
    store = SqliteStore(path)
    old = store.load("a/old-1")
    assert old is not None and (old.record.request_id, old.record.tenant) == ("old-1", "a")
    assert old.record.subtasks["first"].output == {"text": "done"}
    assert old.fingerprint == "f" * 64
    assert store.load("old-1") is None  # the bare id is no tenant's
    none = store.load("old-2")
    assert none is not None and none.record.subtasks["first"].output == {"text": "done"}
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    db.close()
    # Opened again: nothing is keyed twice.
    store = SqliteStore(path)
    assert store.load("a/old-1") is not None and store.load("old-2") is not None
    store.close()
    # And the scheduler reads each as before, by its tenant.
    core = make_core(path, Echo())
    assert (await core.read("old-1", tenant="a")).tenant == "a"
    assert (await core.read("old-2")).tenant == ""
    with pytest.raises(NotFound):
        await core.read("old-1")


def test_a_postgresql_store_from_before_tenant_ids_is_migrated(postgres_url: str) -> None:
    older = [m for m in migrations() if m.version < 3]
    with psycopg.connect(postgres_url) as db:
        db.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in older:
            db.execute(migration.sql.encode())
            db.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        for tenant, request_id in (("a", "old-1"), ("", "old-2")):
            db.execute(
                "INSERT INTO requests (request_id, plan, input, priority, budget, deadline,"
                " state, created_at, tenant) VALUES (%s, %s, '{}', 0, 0, 4e9, 'SUCCEEDED', 1, %s)",
                (request_id, '{"steps": []}', tenant),
            )
            db.execute(
                "INSERT INTO subtasks (request_id, subtask_id, record) VALUES (%s, 'x', %s)",
                (request_id, "{}"),
            )
    store = PostgresStore(postgres_url)
    try:
        with psycopg.connect(postgres_url) as db:
            rows = db.execute("SELECT request_id, tenant FROM requests ORDER BY 1").fetchall()
            subtasks = db.execute("SELECT request_id FROM subtasks ORDER BY 1").fetchall()
        assert rows == [("a/old-1", "a"), ("old-2", "")]
        assert subtasks == [("a/old-1",), ("old-2",)]
    finally:
        store.close()


def test_a_client_reads_its_own_tenant_and_an_admin_any_it_names() -> None:
    client = Caller("client", "a")
    assert client.reads(None) == client.reads("a") == "a"
    with pytest.raises(PermissionDenied) as denied:
        client.reads("b")
    assert denied.value.reason == "TENANT_DENIED"
    admin = Caller("admin", "ops")
    assert admin.reads(None) == "ops"
    assert admin.reads("a") == "a" and admin.reads("") == ""
