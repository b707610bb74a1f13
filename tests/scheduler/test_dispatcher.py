"""The dispatcher with a fake transport and a fake clock: queueing, retries, eviction."""

import asyncio
import random

import pytest

from agentmesh.errors import (
    AgentmeshError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from agentmesh.scheduler.calls import RETRIED, ExecuteResult, SubtaskCall
from agentmesh.scheduler.hedging import (
    HedgeAfterDelay,
    HedgeAtPercentile,
    HedgeOff,
    HedgePolicy,
    Hedger,
    parse_hedge_after,
)
from agentmesh.scheduler.load import LatencyWindow, TokenBucket
from agentmesh.scheduler.policies import RoundRobin
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.scheduler.tiers import Budget
from agentmesh.server.clock import SystemClock
from tests.support.fakes import FakeClock, FakeTransport, fail_with, make_dispatcher


def make(transport: FakeTransport, workers: int = 2, capacity: int = 1, clock=None):
    clock = clock or FakeClock()
    return make_dispatcher(transport, clock=clock, workers=workers, capacity=capacity), clock


def call(subtask_id: str = "s", deadline: float = 2000.0, capability: str = "echo") -> SubtaskCall:
    return SubtaskCall("r", subtask_id, capability, {"x": 1}, deadline=deadline)


async def test_runs_on_a_worker_and_returns_the_output() -> None:
    dispatcher, _ = make(FakeTransport())
    outcome = await dispatcher.run(call())
    assert outcome.result.output == {"echo": {"x": 1}}
    assert outcome.attempts == 1
    assert all(w.in_flight == 0 for w in dispatcher.registry.workers())


async def test_retries_a_retryable_failure_on_another_worker_after_backoff() -> None:
    def behaviour(worker, c, attempt):
        if attempt == 1:
            return fail_with(Unavailable("model down"))
        return ExecuteResult({"ok": True})

    transport = FakeTransport(behaviour)
    dispatcher, clock = make(transport)
    events = []
    outcome = await dispatcher.run(call(), events.append)
    assert outcome.attempts == 2
    first, second = transport.calls[0][0], transport.calls[1][0]
    assert first != second  # retried on the other worker
    assert [e.kind for e in events].count(RETRIED) == 1
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.5


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    transport = FakeTransport(lambda w, c, a: fail_with(Unavailable(f"down on attempt {a}")))
    dispatcher, clock = make(transport, workers=3)
    with pytest.raises(Unavailable, match="attempt 3"):
        await dispatcher.run(call())
    assert len(transport.calls) == 3
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] <= 2.0


async def test_does_not_retry_invalid_argument() -> None:
    transport = FakeTransport(lambda w, c, a: fail_with(InvalidArgument("bad input")))
    dispatcher, _ = make(transport)
    with pytest.raises(InvalidArgument):
        await dispatcher.run(call())
    assert len(transport.calls) == 1


async def test_does_not_retry_past_the_deadline() -> None:
    transport = FakeTransport(lambda w, c, a: fail_with(Unavailable("down")))
    clock = FakeClock(start=1000.0)
    dispatcher, _ = make(transport, clock=clock)
    # 10 ms left: no backoff fits (the backoff draw for the first retry is ~0.3 s with this seed).
    with pytest.raises(Unavailable):
        await dispatcher.run(call(deadline=1000.01))
    assert len(transport.calls) == 1


async def test_no_worker_for_capability_is_unavailable_naming_it() -> None:
    dispatcher, _ = make(FakeTransport())
    with pytest.raises(Unavailable, match="translate") as error:
        await dispatcher.run(call(capability="translate"))
    assert error.value.metadata == {"capability": "translate"}


async def test_capacity_bounds_in_flight_and_the_queue_drains() -> None:
    transport = FakeTransport(delay=0.01)
    dispatcher, _ = make(transport, workers=2, capacity=1)
    peak = 0

    def track(event) -> None:
        nonlocal peak
        peak = max(peak, sum(w.in_flight for w in dispatcher.registry.workers()))

    outcomes = await asyncio.gather(*(dispatcher.run(call(f"s{i}"), track) for i in range(10)))
    assert len(outcomes) == 10
    assert peak <= 2
    assert dispatcher.slots.queue_depths() == {"echo": 0}


async def test_waiting_past_the_deadline_is_deadline_exceeded() -> None:
    transport = FakeTransport(delay=0.2)
    dispatcher, _ = make(transport, workers=1, capacity=1, clock=SystemClock())
    busy = asyncio.create_task(dispatcher.run(call("busy", deadline=dispatcher.clock.now() + 5)))
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded, match="waited"):
        await dispatcher.run(call("late", deadline=dispatcher.clock.now() + 0.05))
    await busy
    assert dispatcher.slots.queue_depths() == {"echo": 0}


async def test_eviction_requeues_in_flight_work_on_another_worker() -> None:
    started = asyncio.Event()

    class Hanging(FakeTransport):
        async def execute(self, worker, c, attempt, timeout):
            self.calls.append((worker.worker_id, c.subtask_id, attempt))
            if worker.worker_id == "w0":
                started.set()
                await asyncio.sleep(3600)
            return ExecuteResult({"by": worker.worker_id})

    transport = Hanging()
    dispatcher, clock = make(transport, workers=1)
    run = asyncio.create_task(dispatcher.run(call()))
    await started.wait()
    spec = WorkerSpec("w1", "127.0.0.1:1", frozenset({"echo"}), 1)
    dispatcher.workers_changed(dispatcher.registry.register(spec, clock.now()))
    await dispatcher.evict("w0", "test")
    outcome = await run
    assert outcome.result.output == {"by": "w1"}
    assert outcome.attempts == 2
    assert clock.sleeps == []  # re-queued at once, no backoff
    assert transport.forgotten == ["w0"]


async def test_evicting_the_last_worker_fails_waiters_as_unavailable() -> None:
    transport = FakeTransport(delay=3600)
    dispatcher, _ = make(transport, workers=1, capacity=1)
    first = asyncio.create_task(dispatcher.run(call("a")))
    second = asyncio.create_task(dispatcher.run(call("b")))
    await asyncio.sleep(0.01)
    await dispatcher.evict("w0", "test")
    for task in (first, second):
        with pytest.raises(Unavailable):
            await task


async def test_cancelling_a_subtask_frees_its_slot() -> None:
    transport = FakeTransport(delay=3600)
    dispatcher, _ = make(transport, workers=1, capacity=1)
    task = asyncio.create_task(dispatcher.run(call()))
    await asyncio.sleep(0.01)
    assert dispatcher.registry.get("w0").in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dispatcher.registry.get("w0").in_flight == 0


def tiered(transport: FakeTransport, *tiers_and_prices: tuple[str, int, float]):
    dispatcher, clock = make(transport, workers=0)
    for worker_id, tier, price in tiers_and_prices:
        spec = WorkerSpec(
            worker_id,
            "127.0.0.1:1",
            frozenset({"echo"}),
            2,
            tier=tier,
            input_price_per_mtok=price,
            output_price_per_mtok=price,
        )
        dispatcher.workers_changed(dispatcher.registry.register(spec, clock.now()))
    return dispatcher


async def test_difficulty_picks_the_tier() -> None:
    transport = FakeTransport()
    dispatcher = tiered(transport, ("cheap", 1, 0.0), ("big", 3, 10.0))
    simple = await dispatcher.run(SubtaskCall("r", "a", "echo", {}, difficulty=1))
    nuanced = await dispatcher.run(SubtaskCall("r", "b", "echo", {}, difficulty=2))
    assert (simple.worker_id, simple.tier) == ("cheap", 1)
    assert (nuanced.worker_id, nuanced.tier) == ("big", 3)


async def test_invalid_output_escalates_to_the_next_tier() -> None:
    def behaviour(worker, c, attempt):
        if worker.worker_id == "cheap":
            return fail_with(AgentmeshError("bad json", reason="OUTPUT_INVALID"))
        return ExecuteResult({"ok": True})

    dispatcher = tiered(
        FakeTransport(behaviour), ("cheap", 1, 0.0), ("cheap2", 1, 0.0), ("big", 3, 10.0)
    )
    outcome = await dispatcher.run(SubtaskCall("r", "a", "echo", {}, difficulty=1))
    assert (outcome.worker_id, outcome.attempts) == ("big", 2)


async def test_budget_downgrades_then_fails() -> None:
    dispatcher = tiered(FakeTransport(), ("cheap", 1, 0.0), ("big", 3, 10.0))
    poor = Budget(0.000001)
    outcome = await dispatcher.run(
        SubtaskCall("r", "a", "echo", {"text": "x" * 400}, difficulty=2, budget=poor)
    )
    assert outcome.worker_id == "cheap"
    only_big = tiered(FakeTransport(), ("big", 3, 10.0))
    with pytest.raises(FailedPrecondition):
        await only_big.run(
            SubtaskCall("r", "a", "echo", {"text": "x" * 400}, difficulty=2, budget=poor)
        )
    assert poor.reserved == 0


async def test_the_retry_budget_stops_a_retry_storm() -> None:
    transport = FakeTransport(lambda w, c, a: fail_with(Unavailable("down")))
    dispatcher, _ = make(transport, workers=2)
    dispatcher._retries = TokenBucket(ratio=0.0, reserve=2.0)  # two retries, then none
    for i in range(3):
        with pytest.raises(Unavailable):
            await dispatcher.run(call(f"s{i}"))
    # 3 first attempts + 2 retries from the reserve; the third subtask was not retried.
    assert len(transport.calls) == 5


async def test_retry_waits_at_least_the_workers_retry_delay() -> None:
    def behaviour(worker, c, attempt):
        if attempt == 1:
            return fail_with(ResourceExhausted("rate limited", retry_after=1.5))
        return ExecuteResult({"ok": True})

    dispatcher, clock = make(FakeTransport(behaviour))
    await dispatcher.run(call())
    assert clock.sleeps[0] >= 1.5


async def test_a_slow_attempt_is_hedged_on_another_worker_and_the_loser_cancelled() -> None:
    cancelled = []

    class OneSlow(FakeTransport):
        async def execute(self, worker, c, attempt, timeout):
            self.calls.append((worker.worker_id, c.subtask_id, attempt))
            if worker.worker_id == "w0":
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancelled.append(worker.worker_id)
                    raise
            return ExecuteResult({"by": worker.worker_id})

    transport = OneSlow()
    dispatcher, _ = make(transport, workers=2, clock=SystemClock())
    dispatcher.hedger = Hedger(HedgePolicy(after=HedgeAfterDelay(0.01)), dispatcher.observer)
    dispatcher.registry.get("w1").in_flight = 1  # the policy picks w0 first
    task = asyncio.create_task(dispatcher.run(call(deadline=dispatcher.clock.now() + 5)))
    await asyncio.sleep(0.005)
    dispatcher.registry.get("w1").in_flight = 0
    outcome = await task
    assert outcome.worker_id == "w1" and outcome.attempts == 1
    assert cancelled == ["w0"]
    assert all(w.in_flight == 0 for w in dispatcher.registry.workers())


def test_hedge_delay_needs_samples_for_p95() -> None:
    window = LatencyWindow()
    policy = HedgePolicy(after=parse_hedge_after("p95"))
    assert policy.delay(window) is None
    for i in range(1, 101):
        window.observe(i / 100)
    assert policy.delay(window) == pytest.approx(0.95)
    assert HedgePolicy().delay(window) is None
    assert HedgePolicy(after=parse_hedge_after("0.2")).delay(window) == 0.2


def test_the_hedge_setting_is_parsed_once_into_its_kind() -> None:
    assert parse_hedge_after("") == HedgeOff()
    assert parse_hedge_after("p95") == HedgeAtPercentile(0.95)
    assert parse_hedge_after("0.2") == HedgeAfterDelay(0.2)
    assert parse_hedge_after("0") == HedgeAfterDelay(0.0)  # hedge at once, not off
    with pytest.raises(ValueError, match="p95"):
        parse_hedge_after("soon")


async def test_an_ejected_worker_gets_no_work_until_its_cool_down_ends() -> None:
    def behaviour(worker, c, attempt):
        if worker.worker_id == "w0":
            return fail_with(Unavailable("sick"))
        return ExecuteResult({"by": worker.worker_id})

    transport = FakeTransport(behaviour)
    dispatcher, clock = make(transport, workers=3, capacity=4)
    dispatcher.slots.policy = RoundRobin(random.Random(1))  # keeps sending w0 its share
    dispatcher._retries = TokenBucket(ratio=1.0, reserve=100.0)
    for i in range(30):
        await dispatcher.run(call(f"s{i}"))
    sick = dispatcher.registry.get("w0")
    assert sick.ejected_until > clock.now()
    calls_to_sick = sum(1 for w, _, _ in transport.calls if w == "w0")
    for i in range(10):
        await dispatcher.run(call(f"t{i}"))
    assert sum(1 for w, _, _ in transport.calls if w == "w0") == calls_to_sick
    clock.advance(sick.ejected_until - clock.now() + 1)
    dispatcher.workers_changed(sick)
    for i in range(20):
        await dispatcher.run(call(f"u{i}"))
    assert sum(1 for w, _, _ in transport.calls if w == "w0") > calls_to_sick


async def test_work_waiting_for_a_fast_worker_moves_on_when_it_is_evicted() -> None:
    transport = FakeTransport()
    dispatcher, clock = make(transport, workers=2)
    fast, slow = dispatcher.registry.get("w0"), dispatcher.registry.get("w1")
    fast.latency.observe(0.01, clock.now())
    slow.latency.observe(1.0, clock.now())
    fast.in_flight = fast.spec.capacity  # full, with work the dispatcher does not track
    waiting = asyncio.create_task(dispatcher.run(call("waiting")))
    await asyncio.sleep(0.01)
    assert dispatcher.slots.queue_depths() == {"echo": 1}  # waits for the fast worker
    await dispatcher.evict("w0", "test")
    outcome = await asyncio.wait_for(waiting, 1.0)
    assert outcome.worker_id == "w1"
