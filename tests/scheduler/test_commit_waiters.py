"""The waiters of one loop turn share one commit marker and one wake-up of the loop.

With a store several schedulers share, every attempt waits for a commit
before its worker is called: many waiters per loop turn. The writer here
commits into a list, and holds each commit until the test opens its gate.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from agentmesh.scheduler.storewriter import GroupWriter, Statement


class GatedSink:
    """Commits into `committed`, each batch once `gate` is open."""

    where = "memory"

    def __init__(self) -> None:
        self.committed: list[list[Statement]] = []
        self.gate = threading.Event()
        self.gate.set()

    def commit(self, statements: list[Statement]) -> None:
        self.gate.wait(10)
        self.committed.append(statements)

    def check(self) -> None:
        pass

    def advice(self, error: BaseException) -> str:
        return ""


async def test_the_waiters_of_one_turn_share_one_wake_up_and_each_sees_its_writes() -> None:
    sink = GatedSink()
    writer = GroupWriter(sink, flush_interval=0.5)
    loop = asyncio.get_running_loop()
    wake_ups = 0
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(*args: Any) -> asyncio.Handle:
        nonlocal wake_ups
        wake_ups += 1
        return call_soon_threadsafe(*args)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:

        async def attempt(i: int) -> bool:
            writer.put(("STARTED", (i,)))
            return await writer.committed(10)

        done = await asyncio.gather(*(attempt(i) for i in range(20)))
    finally:
        loop.call_soon_threadsafe = call_soon_threadsafe  # type: ignore[method-assign]
    assert done == [True] * 20
    assert wake_ups == 1
    # Each one's write was committed before it was told: the flush interval (0.5 s) was
    # not waited for, as a marker commits at once.
    assert sorted(p for batch in sink.committed for _, (p,) in batch) == list(range(20))
    writer.close()


async def test_a_waiter_that_gives_up_leaves_the_others_of_its_turn_waiting() -> None:
    sink = GatedSink()
    writer = GroupWriter(sink)
    sink.gate.clear()
    writer.put(("W", (1,)))
    patient = asyncio.ensure_future(writer.committed(10))
    assert not await writer.committed(0.05)  # the same turn's marker, not committed yet
    assert not patient.done()
    sink.gate.set()
    assert await patient
    writer.close()


def test_waiters_on_two_loops_in_turn_are_each_told() -> None:
    writer = GroupWriter(GatedSink())

    async def wait() -> bool:
        writer.put(("W", (1,)))
        return await writer.committed(5)

    assert asyncio.run(wait())
    assert asyncio.run(wait())
    writer.close()
