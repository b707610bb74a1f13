"""Fakes of the core's real interfaces, for unit tests of pure logic."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.calls import NO_DEFAULT, ExecuteResult, Follower, Literal, SubtaskCall
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.fragments import Offload
from agentmesh.scheduler.policies import LatencyWeighted, Policy
from agentmesh.scheduler.registry import Registry, WorkerRecord, WorkerSpec
from agentmesh.scheduler.retry import RetryPolicy
from agentmesh.server.clock import Clock
from agentmesh.server.refs import MISSING, resolve_ref


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
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        timeout: float,
        followers: Sequence[Follower] = (),
    ) -> ExecuteResult:
        self.calls.append((worker.worker_id, call.subtask_id, attempt))
        for follower in followers:
            follower.stop = lambda: None
        if self.delay:
            await asyncio.sleep(self.delay)
        else:
            await asyncio.sleep(0)
        try:
            result = self.behaviour(worker, call, attempt)
        except AgentmeshError:
            self._follow(worker, followers, {})
            raise
        self._follow(worker, followers, {call.subtask_id: result.output})
        return result

    def _follow(
        self, worker: WorkerRecord, followers: Sequence[Follower], outputs: dict[str, Any]
    ) -> None:
        """Run the followers as a worker would: each once the steps it comes after succeeded,
        with its wired input; one that cannot run is answered FRAGMENT_BROKEN."""
        for follower in followers:
            if follower.done.done():
                continue
            if not all(step in outputs for step in follower.after):
                follower.done.set_exception(
                    AgentmeshError("a step before it failed", reason="FRAGMENT_BROKEN")
                )
                continue
            data = dict(follower.call.input)
            for wire in follower.wiring:
                values = [
                    source.value
                    if isinstance(source, Literal)
                    else resolve_ref(source, {}, outputs)
                    for source in wire.sources
                ]
                found = [v for v in values if v is not MISSING]
                if wire.collect:
                    data[wire.field] = found
                elif found:
                    data[wire.field] = found[0]
                elif wire.default is not NO_DEFAULT:
                    data[wire.field] = wire.default
            call = dataclasses.replace(follower.call, input=data)
            self.calls.append((worker.worker_id, call.subtask_id, follower.attempt))
            try:
                result = self.behaviour(worker, call, follower.attempt)
            except AgentmeshError as error:
                follower.done.set_exception(error)
                continue
            outputs[call.subtask_id] = result.output
            follower.done.set_result(result)

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
    offload: Offload | None = None,
) -> Dispatcher:
    """A dispatcher over `workers` registered workers w0, w1, ... with seeded randomness;
    with `offload`, the workers run fragments."""
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
        offload=offload,
    )
    fragments = offload is not None
    for i in range(workers):
        spec = WorkerSpec(
            f"w{i}",
            f"127.0.0.1:{i}",
            frozenset(capabilities),
            capacity,
            execute_stream=fragments,
            fragments=fragments,
        )
        dispatcher.workers_changed(registry.register(spec, clock.now()))
    return dispatcher
