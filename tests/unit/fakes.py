"""Fakes of the core's real interfaces, for unit tests of pure logic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.registry import WorkerRecord


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
