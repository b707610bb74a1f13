"""Fakes of the core's real interfaces, for unit tests of pure logic."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable, Iterable

from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.policies import LatencyWeighted, Policy
from agentmesh.scheduler.registry import Registry, WorkerRecord, WorkerSpec
from agentmesh.scheduler.retry import RetryPolicy
from agentmesh.server.clock import Clock


class FakeClock:
    """A clock that moves only when told to, or when slept on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        #: Every sleep asked for, in order.
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += max(seconds, 0.0)
        await asyncio.sleep(0)


class SimClock:
    """Simulated time: sleeps wake in time order, only as the test moves the clock."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + max(seconds, 0.0), next(self._seq), wake))
        await wake

    def next_wake(self) -> float:
        """When the earliest pending sleep ends (inf when none)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleeps
        return self._sleepers[0][0] if self._sleepers else float("inf")

    def advance_to(self, when: float) -> None:
        """Move the clock to `when`, waking every sleep that ends by then."""
        self.time = when
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                wake.set_result(None)

    async def advance(self, seconds: float) -> None:
        """Let what is runnable run, move time on by `seconds`, and let the woken run."""
        await settle()
        self.advance_to(self.time + seconds)
        await settle()


async def settle(turns: int = 40) -> None:
    """Give the event loop this many turns, so that every runnable task gets to its next wait."""
    for _ in range(turns):
        await asyncio.sleep(0)


Behaviour = Callable[[WorkerRecord, SubtaskCall, int], ExecuteResult]


class FakeTransport:
    """Answers each attempt with `behaviour(worker, call, attempt)`; records the calls."""

    def __init__(self, behaviour: Behaviour | None = None, delay: float = 0.0) -> None:
        self.behaviour = behaviour or (lambda w, c, a: ExecuteResult({"echo": c.input}))
        self.delay = delay
        self.calls: list[tuple[str, str, int]] = []
        self.forgotten: list[str] = []

    async def execute(
        self, worker: WorkerRecord, call: SubtaskCall, attempt: int, timeout: float
    ) -> ExecuteResult:
        self.calls.append((worker.worker_id, call.subtask_id, attempt))
        if self.delay:
            await asyncio.sleep(self.delay)
        else:
            await asyncio.sleep(0)
        return self.behaviour(worker, call, attempt)

    async def forget(self, worker_id: str) -> None:
        self.forgotten.append(worker_id)


def fail_with(error: AgentmeshError) -> ExecuteResult:
    raise error


def make_dispatcher(
    transport: FakeTransport,
    *,
    policy: Policy | None = None,
    clock: Clock | None = None,
    workers: int = 2,
    capabilities: Iterable[str] = ("echo",),
    capacity: int = 1,
    worker_wait: float = 0.0,
) -> Dispatcher:
    """A dispatcher over `workers` registered workers w0, w1, ... with seeded randomness."""
    clock = clock or FakeClock()
    registry = Registry(initial_latency=0.05, latency_decay=10.0, error_decay=30.0)
    dispatcher = Dispatcher(
        registry,
        transport,
        policy or LatencyWeighted(random.Random(1)),
        retry=RetryPolicy(),
        clock=clock,
        rng=random.Random(2),
        queue_bound=100,
        aging=5.0,
        attempt_timeout=10.0,
        worker_wait=worker_wait,
    )
    for i in range(workers):
        spec = WorkerSpec(f"w{i}", f"127.0.0.1:{i}", frozenset(capabilities), capacity)
        dispatcher.workers_changed(registry.register(spec, clock.now()))
    return dispatcher
