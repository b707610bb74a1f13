"""Latency estimates that get no samples: they decay, idle workers get probes, stuck ones lose.

The simulation runs the real dispatcher on simulated time: a clock whose
sleeps wake in time order when the driver advances it, and a transport
that takes a simulated latency per attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter

from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.convert import worker_status_to_proto
from agentmesh.scheduler.policies import LatencyWeighted, Probing, make_policy
from agentmesh.scheduler.registry import HealthReport, Registry, WorkerRecord, WorkerSpec
from tests.support.fakes import FakeClock, SimClock, make_dispatcher, settle


def workers(n: int, capacity: int = 4, at: float = 0.0) -> tuple[Registry, list[WorkerRecord]]:
    registry = Registry(initial_latency=0.05, latency_decay=10.0, error_decay=30.0)
    records = [
        registry.register(WorkerSpec(f"w{i}", f"127.0.0.1:{i}", frozenset({"x"}), capacity), at)
        for i in range(n)
    ]
    return registry, records


# -- read-time decay -------------------------------------------------------------


def test_an_estimate_without_samples_decays_towards_its_peers_typical_latency() -> None:
    _, (a, b, c) = workers(3)
    a.latency.observe(16.0, 0.0)
    b.latency.observe(0.1, 0.0)
    c.latency.observe(0.2, 0.0)
    assert a.typical_latency() == 0.1  # the lower median of b and c
    assert a.latency_estimate(0.0) == 16.0
    at_10 = a.latency_estimate(10.0)
    at_30 = a.latency_estimate(30.0)
    assert 5.0 < at_10 < 7.0  # one time constant: about 37% of the way left
    assert at_30 < 1.0
    assert a.latency_estimate(120.0) < 0.1001
    # Peers' own estimates stay: they are at or below the typical latency.
    assert b.latency_estimate(120.0) == 0.1


def test_a_stale_self_report_decays_too() -> None:
    _, (a, b) = workers(2)
    b.latency.observe(0.1, 0.0)
    a.latency.observe(0.1, 0.0)
    a.health = HealthReport(latency=16.0)  # the worker's own peak-EWMA, never refreshed
    assert a.latency_estimate(0.0) == 16.0
    assert a.latency_estimate(60.0) < 0.2


def test_a_sample_after_a_quiet_spell_is_weighed_against_the_decayed_estimate() -> None:
    _, (a, b) = workers(2)
    b.latency.observe(0.1, 0.0)
    a.latency.observe(16.0, 0.0)
    a.observe_latency(0.1, 20.0)
    # The decayed estimate at 20 s is about 2.2 s; the fast answer pulls it lower still.
    assert a.latency_estimate(20.0) < 0.5


def test_decay_never_raises_an_estimate_below_the_typical_latency() -> None:
    _, (a, b) = workers(2)
    b.latency.observe(5.0, 0.0)
    assert a.latency_estimate(100.0) == a.latency.estimate() == 0.05


# -- probes ------------------------------------------------------------------------


def test_an_idle_worker_gets_a_bounded_share_of_probes() -> None:
    _, (a, b) = workers(2)
    a.latency.observe(16.0, 0.0)
    b.latency.observe(0.1, 0.0)
    policy = Probing(LatencyWeighted(random.Random(1)), random.Random(2))
    picks: list[tuple[float, str]] = []
    for step in range(2000):  # 100 picks a second for 20 s
        now = step / 100
        worker = policy.pick([a, b], now)
        picks.append((now, worker.worker_id))
        if worker is b:
            b.latency.observe(0.1, now)  # b keeps answering; a only when probed
    probes = [now for now, w in picks if w == "w0"]
    assert probes, "the idle worker was never probed"
    assert probes[0] >= Probing.idle_after
    # At most one probe per `every` seconds.
    assert all(t2 - t1 >= Probing.every for t1, t2 in itertools.pairwise(probes))
    assert len(probes) <= 20 / Probing.every


def test_a_probe_is_not_held_back_for_a_busy_fast_worker() -> None:
    _, (slow, fast) = workers(2, capacity=1)
    slow.latency.observe(16.0, 0.0)
    fast.latency.observe(0.1, 0.0)
    fast.in_flight = 1
    policy = Probing(LatencyWeighted(random.Random(1)), random.Random(2))
    policy.share = 1.0
    assert policy.pick([slow], 10.0) is slow
    assert not policy.worth_waiting(slow, [fast], 1, 10.0)
    assert policy.worth_waiting(slow, [fast], 1, 10.5)  # not a probe: wait for the fast one


def test_the_default_policy_probes() -> None:
    assert isinstance(make_policy("latency_weighted", random.Random(1)), Probing)


# -- a worker that stops answering ----------------------------------------------------


def test_the_oldest_outstanding_attempt_raises_the_estimate() -> None:
    _, (stuck, ok) = workers(2)
    stuck.latency.observe(0.05, 0.0)
    ok.latency.observe(0.5, 0.0)
    stuck.pending.start(0.0)  # never answers
    stuck.in_flight = 1
    policy = LatencyWeighted(random.Random(1))
    assert policy.pick([stuck, ok], 0.1) is stuck  # 100 ms old: not suspicious yet
    assert stuck.latency_estimate(30.0) == 30.0
    assert policy.pick([stuck, ok], 30.0) is ok
    status = worker_status_to_proto(stuck, 30.0, 1_700_000_000.0)
    assert status.latency_estimate.ToTimedelta().total_seconds() == 30.0


def test_finished_attempts_no_longer_count() -> None:
    _, (a,) = workers(1)
    first = a.pending.start(0.0)
    a.pending.start(5.0)
    assert a.pending.oldest_age(10.0) == 10.0
    a.pending.finish(first)
    assert a.pending.oldest_age(10.0) == 5.0


async def test_the_dispatcher_counts_attempts_outstanding_on_a_worker() -> None:
    gate = asyncio.Event()

    class Hanging:
        async def execute(self, worker, call, attempt, timeout):
            await gate.wait()
            return ExecuteResult({})

        async def forget(self, worker_id):
            pass

    clock = FakeClock()
    dispatcher = make_dispatcher(Hanging(), clock=clock, workers=1)  # type: ignore[arg-type]
    run = asyncio.create_task(
        dispatcher.run(SubtaskCall("r", "s", "echo", {}, deadline=clock.now() + 100))
    )
    for _ in range(10):
        await asyncio.sleep(0)
    (worker,) = dispatcher.registry.workers()
    clock.advance(7.0)
    assert worker.latency_estimate(clock.now()) == 7.0
    gate.set()
    await run
    assert len(worker.pending) == 0


# -- the whole dispatcher on simulated time ------------------------------------------------


class SimTransport:
    """Every worker answers in about 100 ms (worker w0 too: it was slow only once)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.rng = random.Random(3)
        self.calls: list[tuple[float, str]] = []

    async def execute(self, worker, call, attempt, timeout) -> ExecuteResult:
        self.calls.append((self.clock.now(), worker.worker_id))
        await self.clock.sleep(0.1 * self.rng.uniform(0.8, 1.2))
        return ExecuteResult({})

    async def forget(self, worker_id: str) -> None:
        pass


async def test_after_one_slow_answer_a_steady_stream_returns_to_the_worker() -> None:
    clock = SimClock()
    transport = SimTransport(clock)
    dispatcher = make_dispatcher(
        transport,  # type: ignore[arg-type]
        policy=make_policy("latency_weighted", random.Random(7)),
        clock=clock,  # type: ignore[arg-type]
        workers=3,
        capacity=2,
    )
    slow_once, *others = sorted(dispatcher.registry.workers(), key=lambda w: w.worker_id)
    slow_once.latency.observe(16.0, 0.0)  # one 16 s ticket
    for w in others:
        w.latency.observe(0.1, 0.0)
    end, gap = 90.0, 0.05  # 20 subtasks a second, about 2 in flight
    runs: list[asyncio.Task[object]] = []
    arrival = 0.0
    while arrival < end:
        if arrival <= clock.next_wake():
            clock.advance_to(arrival)
            call = SubtaskCall("r", f"s{len(runs)}", "echo", {}, deadline=arrival + 60.0)
            runs.append(asyncio.create_task(dispatcher.run(call)))
            arrival += gap
        else:
            clock.advance_to(clock.next_wake())
        await settle()
    while clock.next_wake() < float("inf"):
        clock.advance_to(clock.next_wake())
        await settle()
    await asyncio.gather(*runs)
    share = Counter(w for t, w in transport.calls if t >= end - 30.0)
    total = sum(share.values())
    print(
        f"picks in the last 30 s: {dict(share)}; first of w0 at",
        min((t for t, w in transport.calls if w == "w0"), default=None),
    )
    assert share["w0"] >= 0.2 * total


async def test_a_wedged_worker_stops_getting_traffic_before_its_slots_fill() -> None:
    """w0 looks fastest, but its event loop is wedged: nothing it is sent comes back."""

    class Wedged(SimTransport):
        async def execute(self, worker, call, attempt, timeout) -> ExecuteResult:
            if worker.worker_id == "w0":
                self.calls.append((self.clock.now(), worker.worker_id))
                await asyncio.Event().wait()
            return await super().execute(worker, call, attempt, timeout)

    clock = SimClock()
    transport = Wedged(clock)
    dispatcher = make_dispatcher(
        transport,  # type: ignore[arg-type]
        policy=LatencyWeighted(random.Random(7)),
        clock=clock,  # type: ignore[arg-type]
        workers=2,
        capacity=4,
    )
    dispatcher.registry.get("w1").latency.observe(0.1, 0.0)  # type: ignore[union-attr]
    runs = []
    for i in range(100):  # 20 a second for 5 s
        clock.advance_to(i * 0.05)
        runs.append(asyncio.create_task(dispatcher.run(SubtaskCall("r", f"s{i}", "echo", {}))))
        await settle()
        while clock.next_wake() <= (i + 1) * 0.05:
            clock.advance_to(clock.next_wake())
            await settle()
    sent = Counter(w for _, w in transport.calls)
    print(f"attempts sent: {dict(sent)}")
    assert sent["w0"] <= 2  # its capacity is 4: the stuck attempt's age steered the rest away
    stuck = dispatcher.registry.get("w0")
    assert stuck is not None and stuck.latency_estimate(clock.now()) > 4.0
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
