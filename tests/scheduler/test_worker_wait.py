"""Waiting for workers: for one of a capability to register, and for a preferred one.

The clock is manual: sleeps wake only when the test advances it, so a test
decides exactly when a grace runs out.
"""

from __future__ import annotations

import asyncio

import pytest

from agentmesh.errors import Unavailable
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.registry import WorkerSpec
from tests.support.fakes import FakeTransport, SimClock, make_dispatcher, settle

GRACE = 5.0


class Gated(FakeTransport):
    """Attempts of the listed subtasks wait for their gate; the others answer at once."""

    def __init__(self, *held: str) -> None:
        super().__init__()
        self.gates = {s: asyncio.Event() for s in held}

    async def execute(self, worker, call, attempt, timeout) -> ExecuteResult:
        self.calls.append((worker.worker_id, call.subtask_id, attempt))
        gate = self.gates.get(call.subtask_id)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
        return ExecuteResult({"by": worker.worker_id})


def make(transport: FakeTransport, *worker_ids: str) -> tuple[Dispatcher, SimClock]:
    clock = SimClock(1000.0)
    dispatcher = make_dispatcher(transport, clock=clock, workers=0, worker_wait=GRACE)
    for worker_id in worker_ids:
        join(dispatcher, worker_id)
    return dispatcher, clock


def join(dispatcher: Dispatcher, worker_id: str, capability: str = "echo") -> None:
    spec = WorkerSpec(worker_id, "127.0.0.1:1", frozenset({capability}), 1)
    dispatcher.workers_changed(dispatcher.registry.register(spec, dispatcher.clock.now()))


def call(subtask_id: str = "s", prefer: str = "", deadline: float = 1060.0) -> SubtaskCall:
    return SubtaskCall("r", subtask_id, "echo", {}, deadline=deadline, prefer=prefer)


# -- a capability with no live worker ---------------------------------------------------


async def test_a_subtask_waits_for_a_worker_of_its_capability_to_register() -> None:
    dispatcher, clock = make(FakeTransport())
    run = asyncio.create_task(dispatcher.run(call()))
    await clock.advance(1.0)
    assert not run.done()
    join(dispatcher, "w0", capability="other")  # not one that can serve it
    await settle()
    assert not run.done()
    join(dispatcher, "w0")  # woken at once, no clock needed
    outcome = await asyncio.wait_for(run, 5)
    assert (outcome.worker_id, outcome.attempts) == ("w0", 1)


async def test_with_no_worker_within_the_grace_it_fails_naming_the_capability() -> None:
    dispatcher, clock = make(FakeTransport())
    run = asyncio.create_task(dispatcher.run(call()))
    await clock.advance(GRACE - 0.1)
    assert not run.done()
    await clock.advance(0.2)
    with pytest.raises(Unavailable, match="'echo'") as error:
        await asyncio.wait_for(run, 5)
    assert error.value.metadata == {"capability": "echo"}


async def test_the_wait_ends_with_the_deadline_when_that_is_sooner() -> None:
    dispatcher, clock = make(FakeTransport())
    run = asyncio.create_task(dispatcher.run(call(deadline=clock.now() + 1.0)))
    await clock.advance(1.0)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(run, 5)


async def test_a_worker_evicted_and_back_at_once_loses_no_subtask() -> None:
    transport = Gated("s")
    dispatcher, _ = make(transport, "w0")
    run = asyncio.create_task(dispatcher.run(call()))
    await settle()
    await dispatcher.evict("w0", "heartbeat_timeout")
    await settle()
    assert not run.done()
    join(dispatcher, "w0")  # it registers again 2 ms later
    transport.gates["s"].set()
    outcome = await asyncio.wait_for(run, 5)
    assert outcome.worker_id == "w0" and outcome.attempts == 2


# -- a preferred worker -------------------------------------------------------------------


async def test_a_subtask_waits_for_its_busy_preferred_worker() -> None:
    transport = Gated("busy")
    dispatcher, clock = make(transport, "w0", "w1")
    busy = asyncio.create_task(dispatcher.run(call("busy")))
    await settle()
    (holder,) = {w for w, _, _ in transport.calls}
    other = "w1" if holder == "w0" else "w0"
    resumed = asyncio.create_task(dispatcher.run(call("resumed", prefer=holder)))
    await clock.advance(1.0)
    assert not resumed.done()
    assert dispatcher.registry.get(other).in_flight == 0  # type: ignore[union-attr]
    transport.gates["busy"].set()  # the slot frees: the waiting subtask gets it
    assert (await asyncio.wait_for(resumed, 5)).worker_id == holder
    await busy


async def test_a_subtask_waits_for_its_preferred_worker_to_register() -> None:
    dispatcher, clock = make(FakeTransport(), "w1")
    resumed = asyncio.create_task(dispatcher.run(call("resumed", prefer="w0")))
    await clock.advance(1.0)
    assert not resumed.done()
    join(dispatcher, "w0")
    assert (await asyncio.wait_for(resumed, 5)).worker_id == "w0"


async def test_after_the_grace_the_subtask_goes_elsewhere() -> None:
    transport = Gated("busy")
    dispatcher, clock = make(transport, "w0")
    busy = asyncio.create_task(dispatcher.run(call("busy")))
    await settle()
    join(dispatcher, "w1")
    resumed = asyncio.create_task(dispatcher.run(call("resumed", prefer="w0")))
    await clock.advance(GRACE - 0.1)
    assert not resumed.done()
    await clock.advance(0.2)
    assert (await asyncio.wait_for(resumed, 5)).worker_id == "w1"
    transport.gates["busy"].set()
    await busy
    assert all(w.in_flight == 0 for w in dispatcher.registry.workers())


async def test_a_cancelled_preferring_subtask_leaves_no_slot_taken() -> None:
    dispatcher, clock = make(FakeTransport(), "w1")
    resumed = asyncio.create_task(dispatcher.run(call("resumed", prefer="w0")))
    await clock.advance(1.0)
    resumed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await resumed
    join(dispatcher, "w0")
    assert dispatcher.registry.get("w0").in_flight == 0  # type: ignore[union-attr]
    assert dispatcher.slots._preferring == {}
