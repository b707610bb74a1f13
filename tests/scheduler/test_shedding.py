"""Late shedding: a subtask that waited in its queue until its request can no longer finish
by its deadline fails at once, DEADLINE_EXCEEDED, and its slot goes to work that can."""

import asyncio

import pytest

from agentmesh.errors import DeadlineExceeded
from agentmesh.scheduler.calls import SubtaskCall
from tests.support.fakes import FakeClock, FakeTransport, make_dispatcher, settle


def call(subtask_id: str, deadline: float, critical_path: float = 0.0) -> SubtaskCall:
    return SubtaskCall(
        "r", subtask_id, "echo", {"x": 1}, deadline=deadline, critical_path=critical_path
    )


class Gate(FakeTransport):
    """Holds every attempt until it is opened; records what ran."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def execute(self, worker, c, attempt, timeout, followers=()):
        self.calls.append((worker.worker_id, c.subtask_id, attempt))
        await self.open.wait()
        return self.behaviour(worker, c, attempt)


def dispatcher_with_one_slot(shed_late: bool = True):
    transport = Gate()
    clock = FakeClock()
    dispatcher = make_dispatcher(transport, clock=clock, workers=1, capacity=1)
    if shed_late:
        dispatcher.slots.hopeless = dispatcher._hopeless
    dispatcher.latencies.observe("echo", 0.5)  # an attempt takes about 0.5 s
    return dispatcher, transport, clock


async def test_a_subtask_that_waited_past_hope_fails_without_running() -> None:
    dispatcher, transport, clock = dispatcher_with_one_slot()
    now = clock.now()
    first = asyncio.create_task(dispatcher.run(call("first", now + 100)))
    # Queued behind it: 0.5 s of its own work and 1 s of its plan's after it, 3 s to go.
    late = asyncio.create_task(dispatcher.run(call("late", now + 3, critical_path=1.0)))
    fine = asyncio.create_task(dispatcher.run(call("fine", now + 100, critical_path=1.0)))
    await settle()
    clock.advance(2.0)  # now 1 s left for 1.5 s of work: it cannot finish in time
    transport.open.set()
    with pytest.raises(DeadlineExceeded) as raised:
        await late
    assert raised.value.reason == "DEADLINE_UNREACHABLE"
    # 1 s of plan after it, and its own attempt as the estimate has it then (0.65 s: the
    # first subtask's 2 s folded into the 0.5 s).
    assert "1650 ms of work left, 1000 ms to the deadline" in raised.value.message
    assert (await first).attempts == 1
    assert (await fine).attempts == 1
    assert [s for _, s, _ in transport.calls] == ["first", "fine"]  # "late" never ran
    assert dispatcher.registry.get("w0").in_flight == 0


async def test_a_subtask_that_can_still_make_it_keeps_its_turn() -> None:
    dispatcher, transport, clock = dispatcher_with_one_slot()
    now = clock.now()
    first = asyncio.create_task(dispatcher.run(call("first", now + 100)))
    tight = asyncio.create_task(dispatcher.run(call("tight", now + 3, critical_path=1.0)))
    await settle()
    clock.advance(1.0)  # 2 s left for 1.5 s of work
    transport.open.set()
    await first
    assert (await tight).attempts == 1


async def test_a_subtask_given_a_slot_at_once_is_never_shed() -> None:
    # Its deadline is the client's to choose: only a wait in the queue makes it hopeless.
    dispatcher, transport, clock = dispatcher_with_one_slot()
    transport.open.set()
    outcome = await dispatcher.run(call("short", clock.now() + 0.2, critical_path=1.0))
    assert outcome.attempts == 1


async def test_with_shedding_off_a_hopeless_subtask_still_runs() -> None:
    dispatcher, transport, clock = dispatcher_with_one_slot(shed_late=False)
    now = clock.now()
    first = asyncio.create_task(dispatcher.run(call("first", now + 100)))
    late = asyncio.create_task(dispatcher.run(call("late", now + 3, critical_path=1.0)))
    await settle()
    clock.advance(2.0)
    transport.open.set()
    await first
    assert (await late).attempts == 1


def test_the_scheduler_sheds_by_default() -> None:
    from agentmesh.scheduler.config import SchedulerConfig

    assert SchedulerConfig().shed_late is True
    assert SchedulerConfig.from_env({"AGENTMESH_SHED_LATE": "0"}).shed_late is False
