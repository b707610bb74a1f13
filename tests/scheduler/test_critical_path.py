"""Critical-path priority: the remaining critical path, the queue's slack order, its stats."""

from __future__ import annotations

import asyncio
import random

import pytest

from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.critical_path import CapabilityLatencies, remaining_critical_path
from agentmesh.scheduler.executor import Executor
from agentmesh.scheduler.plans import Plan, Step
from agentmesh.scheduler.policies import RoundRobin
from agentmesh.scheduler.queues import (
    CRITICAL_PATH,
    DEADLINE,
    HIGH,
    LOW,
    NORMAL,
    CapabilityQueue,
)
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.registry import WorkerRecord
from tests.support.fakes import FakeClock, FakeTransport, make_dispatcher, settle

ESTIMATES = {"fetch": 1.0, "summarize": 2.0, "classify": 0.5, "reply": 3.0}


def chain(*capabilities: str) -> Plan:
    """Steps s0 -> s1 -> ... on the capabilities given."""
    return Plan(
        steps=tuple(
            Step(f"s{i}", c, depends_on=(f"s{i - 1}",) if i else ())
            for i, c in enumerate(capabilities)
        )
    )


# -- the remaining critical path ------------------------------------------------------


def test_a_chain_counts_every_step_after_this_one() -> None:
    plan = chain("fetch", "summarize", "classify", "reply")
    assert remaining_critical_path(plan, "s0", ESTIMATES.__getitem__) == 2.0 + 0.5 + 3.0
    assert remaining_critical_path(plan, "s2", ESTIMATES.__getitem__) == 3.0
    assert remaining_critical_path(plan, "s3", ESTIMATES.__getitem__) == 0.0


def test_the_longest_branch_counts_not_the_sum_of_branches() -> None:
    # fetch fans out to summarize -> reply and classify, which join in a last classify.
    plan = Plan(
        steps=(
            Step("fetch", "fetch"),
            Step("summary", "summarize", depends_on=("fetch",)),
            Step("draft", "reply", depends_on=("summary",)),
            Step("label", "classify", depends_on=("fetch",)),
            Step("join", "classify", depends_on=("draft", "label")),
        )
    )
    estimate = ESTIMATES.__getitem__
    assert remaining_critical_path(plan, "fetch", estimate) == 2.0 + 3.0 + 0.5
    assert remaining_critical_path(plan, "label", estimate) == 0.5
    assert remaining_critical_path(plan, "join", estimate) == 0.0


def test_wide_and_shallow_plans_have_one_step_after_the_first() -> None:
    fan = Plan(
        steps=(
            Step("root", "fetch"),
            *(Step(f"leaf{i}", "summarize", depends_on=("root",)) for i in range(10)),
        )
    )
    assert remaining_critical_path(fan, "root", ESTIMATES.__getitem__) == 2.0
    assert remaining_critical_path(fan, "leaf3", ESTIMATES.__getitem__) == 0.0


def test_a_long_chain_does_not_meet_the_recursion_limit() -> None:
    plan = chain(*["fetch"] * 3000)
    assert remaining_critical_path(plan, "s0", lambda c: 0.01) == pytest.approx(29.99)


def test_latencies_are_a_mean_of_what_was_observed_with_a_fallback_for_the_unseen() -> None:
    latencies = CapabilityLatencies(default=0.05, weight=0.5)
    assert latencies.estimate("summarize") == 0.05  # nothing seen at all: the default
    latencies.observe("summarize", 2.0)
    assert latencies.estimate("summarize") == 2.0  # the first observation as it is
    latencies.observe("summarize", 1.0)
    assert latencies.estimate("summarize") == 1.5
    latencies.observe("fetch", 0.2)
    latencies.observe("reply", 4.0)
    # Never seen: the lower median of the capabilities seen.
    assert latencies.estimate("classify") == 1.5


# -- the queue's order within a class -------------------------------------------------


def test_a_long_chains_step_leaves_before_a_last_step_with_the_same_deadline() -> None:
    q: CapabilityQueue[str] = CapabilityQueue("summarize", 100, aging=5.0)
    q.push("shallow", priority=NORMAL, deadline=30, now=0, critical_path=0.0)
    q.push("deep", priority=NORMAL, deadline=30, now=1, critical_path=8.0)
    q.push("middle", priority=NORMAL, deadline=30, now=2, critical_path=3.0)
    assert [q.pop(2), q.pop(2), q.pop(2)] == ["deep", "middle", "shallow"]


def test_slack_not_path_decides_so_an_earlier_deadline_can_still_lead() -> None:
    q: CapabilityQueue[str] = CapabilityQueue("summarize", 100, aging=5.0)
    q.push("deep-but-late", priority=NORMAL, deadline=30, now=0, critical_path=5.0)  # key 25
    q.push("soon", priority=NORMAL, deadline=20, now=0, critical_path=0.0)  # key 20
    q.push("tie-first", priority=NORMAL, deadline=27, now=0, critical_path=2.0)  # key 25
    assert [q.pop(0), q.pop(0), q.pop(0)] == ["soon", "deep-but-late", "tie-first"]


def test_order_deadline_is_earliest_deadline_first_whatever_the_path() -> None:
    q: CapabilityQueue[str] = CapabilityQueue("summarize", 100, aging=5.0, order=DEADLINE)
    q.push("shallow", priority=NORMAL, deadline=30, now=0, critical_path=0.0)
    q.push("deep", priority=NORMAL, deadline=30, now=1, critical_path=8.0)
    q.push("soon", priority=NORMAL, deadline=29, now=2, critical_path=0.0)
    assert [q.pop(2), q.pop(2), q.pop(2)] == ["soon", "shallow", "deep"]


@pytest.mark.parametrize("order", [CRITICAL_PATH, DEADLINE])
def test_aging_still_lifts_a_lower_class(order: str) -> None:
    q: CapabilityQueue[str] = CapabilityQueue("summarize", 100, aging=5.0, order=order)
    q.push("old-low", priority=LOW, deadline=1000, now=0, critical_path=0.0)
    # One class of difference: the low entry outranks fresh HIGH work after 10 s, however
    # little slack that work has.
    q.push("urgent-high", priority=HIGH, deadline=10, now=9, critical_path=9.0)
    assert q.pop(now=9) == "urgent-high"
    q.push("urgent-high-2", priority=HIGH, deadline=12, now=11, critical_path=11.0)
    assert q.pop(now=11) == "old-low"


def test_an_old_entry_leaves_within_a_bound_under_a_steady_stream() -> None:
    """A shallow entry is passed only by the newcomers whose key (deadline less path) is
    below its own, those that came within the longest path of it; later ones never pass it,
    even with a backlog that only grows (ordering by path alone would starve it)."""
    q: CapabilityQueue[str] = CapabilityQueue("summarize", 1000, aging=1e9)  # no aging
    budget, path = 20.0, 6.0
    q.push("old", priority=NORMAL, deadline=budget, now=0, critical_path=0.0)  # key 20
    left_at = None
    for tick in range(1, 200):
        now = float(tick)
        # Two deep newcomers a second (key now + 14), one slot a second.
        for _ in range(2):
            q.push("new", priority=NORMAL, deadline=now + budget, now=now, critical_path=path)
        if q.pop(now) == "old":
            left_at = now
            break
    # The ten that came at 1..5 s (keys 15..19) pass it; it is the eleventh to leave.
    assert left_at == 11.0


def test_least_slack_is_reported_whatever_the_order() -> None:
    for order in (CRITICAL_PATH, DEADLINE):
        q: CapabilityQueue[str] = CapabilityQueue("summarize", 100, aging=5.0, order=order)
        assert q.least_slack(0) is None
        a = q.push("a", priority=NORMAL, deadline=30, now=0, critical_path=4.0)
        q.push("b", priority=LOW, deadline=12, now=0, critical_path=5.0)
        assert q.least_slack(now=2) == 12 - 5 - 2
        q.push("late", priority=HIGH, deadline=3, now=2, critical_path=2.0)
        assert q.least_slack(now=2) == -1.0  # expected late
        q.remove(a)
        assert q.least_slack(now=2) == -1.0


def test_an_unknown_order_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"unknown queue order 'fifo'.*critical_path, deadline"):
        SchedulerConfig.from_env({"AGENTMESH_QUEUE_ORDER": "fifo"})
    assert SchedulerConfig.from_env({}).queue_order == CRITICAL_PATH
    assert SchedulerConfig.from_env({"AGENTMESH_QUEUE_ORDER": "deadline"}).queue_order == DEADLINE


# -- through the executor and the dispatcher --------------------------------------------


class Gated(FakeTransport):
    """Holds every attempt until the test opens the gate; records the calls in order."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.received: list[SubtaskCall] = []

    async def execute(
        self, worker: WorkerRecord, call: SubtaskCall, attempt: int, timeout: float
    ) -> ExecuteResult:
        self.received.append(call)
        await self.gate.wait()
        return ExecuteResult({"ok": True})


async def _first_steps_in_order(order: str) -> list[tuple[str, float]]:
    """A worker with one slot, busy; then a one-step request and a four-step chain with the
    same deadline queue for it (the one-step first). Which goes first when it frees?"""
    transport = Gated()
    dispatcher = make_dispatcher(
        transport,
        policy=RoundRobin(random.Random(1)),
        clock=FakeClock(),
        workers=1,
        capabilities=("work",),
        capacity=1,
    )
    dispatcher.slots.queue_order = order
    dispatcher.latencies.observe("work", 1.5)
    executor = Executor(dispatcher)
    deadline = dispatcher.clock.now() + 60.0
    records = {
        "blocker": new_record("blocker", chain("work"), {}, 0, 0.0),
        "shallow": new_record("shallow", chain("work"), {}, 0, 0.0),
        "deep": new_record("deep", chain("work", "work", "work", "work"), {}, 0, 0.0),
    }
    tasks = []
    for record in records.values():
        tasks.append(asyncio.create_task(executor.execute(record, deadline, lambda e: None)))
        await settle()
    assert [c.request_id for c in transport.received] == ["blocker"]
    transport.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(r.state == "SUCCEEDED" for r in records.values())
    return [(c.request_id, c.critical_path) for c in transport.received[1:3]]


async def test_the_executor_sends_the_remaining_path_and_the_chain_goes_first() -> None:
    first, second = await _first_steps_in_order(CRITICAL_PATH)
    assert first[0] == "deep"
    assert first[1] == pytest.approx(3 * 1.5)  # three steps of 1.5 s after the first
    assert second == ("shallow", 0.0)


async def test_with_order_deadline_the_queue_keeps_arrival_order_on_a_tie() -> None:
    first, second = await _first_steps_in_order(DEADLINE)
    assert [first[0], second[0]] == ["shallow", "deep"]


# -- across the capabilities of one worker ----------------------------------------------

OTHERS = ("b", "c", "d", "e", "f")


def ignore(event: object) -> None:
    """Progress events are not followed here."""


async def _next_after_blocker(order: str, requests: list[tuple[str, Plan, float]]) -> str:
    """A worker offering several capabilities, with one slot, busy; the requests queue on
    different capabilities. Which one does the freed slot go to?"""
    transport = Gated()
    dispatcher = make_dispatcher(
        transport,
        policy=RoundRobin(random.Random(1)),
        clock=FakeClock(),
        workers=1,
        capabilities=("a", "g", *OTHERS),
        capacity=1,
    )
    dispatcher.slots.queue_order = order
    for capability in ("a", "g", *OTHERS):
        dispatcher.latencies.observe(capability, 1.0)
    executor = Executor(dispatcher)
    now = dispatcher.clock.now()
    tasks = [
        asyncio.create_task(
            executor.execute(new_record("blocker", chain("a"), {}, 0, 0.0), now + 60, ignore)
        )
    ]
    await settle()
    for request_id, plan, deadline in requests:
        record = new_record(request_id, plan, {}, 0, 0.0)
        tasks.append(asyncio.create_task(executor.execute(record, now + deadline, ignore)))
        await settle()
    transport.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    return transport.received[1].request_id


async def test_a_freed_slot_goes_to_the_least_slack_among_its_capabilities() -> None:
    requests = [(f"shallow-{c}", chain(c), 60.0) for c in OTHERS]
    requests.append(("deep", chain("g", "g", "g"), 60.0))
    assert await _next_after_blocker(CRITICAL_PATH, requests) == "deep"


async def test_with_order_deadline_a_freed_slot_goes_to_the_earliest_deadline() -> None:
    requests = [(f"late-{c}", chain(c), 60.0) for c in OTHERS]
    requests.append(("soon", chain("g"), 30.0))
    requests.append(("deep", chain("a", "a", "a"), 59.0))
    assert await _next_after_blocker(DEADLINE, requests) == "soon"


async def test_the_dispatcher_learns_each_capabilitys_latency_from_its_attempts() -> None:
    clock = FakeClock()

    def slow(worker: WorkerRecord, call: SubtaskCall, attempt: int) -> ExecuteResult:
        clock.advance(0.7 if call.capability == "a" else 0.2)
        return ExecuteResult({"ok": True})

    dispatcher = make_dispatcher(FakeTransport(slow), clock=clock, capabilities=("a", "b"))
    assert dispatcher.latencies.estimate("a") == 0.05  # nothing seen: the initial latency
    await dispatcher.run(SubtaskCall("r1", "s1", "a", {}, deadline=clock.now() + 60))
    await dispatcher.run(SubtaskCall("r2", "s1", "b", {}, deadline=clock.now() + 60))
    assert dispatcher.latencies.estimate("a") == pytest.approx(0.7)
    assert dispatcher.latencies.estimate("b") == pytest.approx(0.2)
