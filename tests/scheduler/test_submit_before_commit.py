"""A Submit's steps start without waiting for the store; its answer still waits for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentmesh.errors import Unavailable
from agentmesh.scheduler.core import Source
from agentmesh.scheduler.store import SqliteStore
from tests.scheduler.test_request_ids import PLAN, TEXT
from tests.scheduler.test_store_health import make_core, read_only, until


async def test_steps_start_at_once_and_the_answer_waits_for_the_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    core = make_core(store)
    read_only(store, True)
    submit = asyncio.create_task(core.submit("slow-disk", Source(plan=PLAN), dict(TEXT)))
    calls = core.dispatcher.transport.calls  # type: ignore[attr-defined]
    await until(lambda: len(calls) >= 2 and not store.up, "both steps to run, the store down")
    await asyncio.sleep(0.05)
    assert not submit.done()  # nothing is answered that is not durable

    read_only(store, False)
    record = await submit
    assert record.state == "SUCCEEDED"
    stored = store.load("slow-disk")
    assert stored is not None and stored.record.state == "SUCCEEDED"
    store.close()


async def test_a_request_whose_commit_never_comes_is_answered_unavailable(
    tmp_path: Path,
) -> None:
    """The price of not waiting: its steps ran, and the answer is UNAVAILABLE all the same."""
    store = SqliteStore(tmp_path / "s.db")
    core = make_core(store)
    read_only(store, True)
    with pytest.raises(Unavailable) as refused:
        await core.submit("never-stored", Source(plan=PLAN), dict(TEXT), timeout=0.5)
    assert refused.value.reason == "STORE_UNAVAILABLE"
    read_only(store, False)
    assert await store.committed(10)
    again = await core.submit("never-stored", Source(plan=PLAN), dict(TEXT))
    assert again.state == "SUCCEEDED"
    store.close()


async def test_a_request_is_shown_only_once_it_is_in_the_store(tmp_path: Path) -> None:
    """What GetRequest shows survives a restart: a request not yet committed waits."""
    store = SqliteStore(tmp_path / "s.db")
    core = make_core(store)
    read_only(store, True)
    submit = asyncio.create_task(core.submit("slow-disk", Source(plan=PLAN), dict(TEXT)))
    calls = core.dispatcher.transport.calls  # type: ignore[attr-defined]
    await until(lambda: len(calls) >= 1 and not store.up, "a step to run, the store down")
    shown = asyncio.create_task(core.read("slow-disk", timeout=30))
    await asyncio.sleep(0.05)
    assert not shown.done()
    with pytest.raises(Unavailable):
        await core.read("slow-disk", timeout=0.3)

    read_only(store, False)
    assert (await shown).request_id == "slow-disk"
    assert store.load("slow-disk") is not None
    await submit
    store.close()
