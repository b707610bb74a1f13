"""A read of the PostgreSQL store waits in a thread, never on the event loop: a database
server that is slow to answer holds that call only, not heartbeats and every other call."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from agentmesh.errors import NotFound
from agentmesh.scheduler.pgstore import PostgresStore
from tests.scheduler.test_store_health import make_core


async def test_a_read_held_by_the_database_leaves_the_loop_running(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    core = make_core(store)  # type: ignore[arg-type]
    locker = psycopg.connect(postgres_url)
    # Holds every read of the requests table until released.
    locker.execute("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE")
    # Released from a thread in any case, so that a read that held the loop ends too.
    release = threading.Timer(3.0, locker.rollback)
    release.start()
    try:
        reading = asyncio.create_task(core.get("never-seen"))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not reading.done()  # the loop ran while the read waited
        release.cancel()
        locker.rollback()
        with pytest.raises(NotFound):
            await reading
    finally:
        release.cancel()
        locker.close()
        store.close()
