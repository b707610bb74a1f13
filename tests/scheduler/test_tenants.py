"""Tenants: a request is its submitter's tenant's, in memory and in the store, and another
tenant's callers are told it does not exist (test_tenant_ids: each tenant's own ids)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentmesh.errors import NotFound
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.store import SqliteStore
from tests.scheduler.test_request_ids import PLAN, TEXT, Flaky, make_core
from tests.support.stores import Stores


async def test_a_request_is_its_tenants_and_only_its_tenant_sees_it(tmp_path: Path) -> None:
    core = make_core(tmp_path / "s.db", Flaky())
    record = await core.submit("r-a", Source(plan=PLAN), dict(TEXT), tenant="a")
    assert record.tenant == "a"
    assert (await core.read("r-a", tenant="a")).request_id == "r-a"
    with pytest.raises(NotFound) as hidden:
        await core.read("r-a", tenant="b")
    with pytest.raises(NotFound) as unknown:
        await core.read("r-none", tenant="b")
    # The same answer as for an id nobody used: nothing tells that it exists.
    assert hidden.value.reason == unknown.value.reason == "UNKNOWN_REQUEST"
    assert hidden.value.message == unknown.value.message.replace("r-none", "r-a")


async def test_the_tenant_survives_a_restart(stores: Stores) -> None:
    core = make_core(stores, Flaky())
    await core.submit("r-a", Source(plan=PLAN), dict(TEXT), tenant="a")
    assert core.store is not None
    core.store.close()
    restarted: SchedulerCore = make_core(stores, Flaky())
    assert (await restarted.read("r-a", tenant="a")).tenant == "a"
    with pytest.raises(NotFound):
        await restarted.get("r-a", tenant="b")


def test_a_store_file_from_before_tenants_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteStore(path)
    store.save_request(new_record("old", PLAN, dict(TEXT), 0, 1.0), 4e9, "f" * 64)
    store.close()
    with sqlite3.connect(path) as db:  # as a file written before the tenant column
        db.execute("ALTER TABLE requests DROP COLUMN tenant")
    db.close()
    store = SqliteStore(path)
    old = store.load("old")
    assert old is not None and old.record.tenant == "" and old.fingerprint == "f" * 64
    store.save_request(new_record("new", PLAN, dict(TEXT), 0, 1.0, tenant="t"), 4e9)
    assert store.flush()
    new = store.load("t/new")
    assert new is not None and new.record.tenant == "t"
    store.close()
