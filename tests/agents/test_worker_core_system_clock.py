"""The worker core on the real clock, whose waits are the loop's own timers (`_wait_on_loop`):
deadlines, cancellation and detached finishing behave as on an injected clock. And a `sim`
backend with no latency answers without giving up the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.echo import EchoBackend
from agentmesh.agents.simulated import SimulatedBackend, SimulatedProfile
from agentmesh.agents.subtask import Subtask
from agentmesh.errors import DeadlineExceeded
from agentmesh.server.clock import SystemClock
from agentmesh.server.skills import SKILLS, Skill
from agentmesh.usage import Usage

SHORT = 0.05
"""Seconds of a deadline meant to pass: the backend never answers by itself."""
LONG = 60.0
"""Seconds of a deadline meant not to pass: the test ends well before."""


class HeldBackend:
    """Answers `sentiment` only once `release` is set; records runs that start, end or stop."""

    name = "held"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.ended = asyncio.Event()
        """Set when a run finishes or stops."""

    def capabilities(self) -> frozenset[str]:
        return frozenset({"sentiment"})

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(str(data["text"]))
            self.ended.set()
            raise
        self.finished.append(str(data["text"]))
        self.ended.set()
        return BackendResult({"label": "neutral", "score": 0.0}, Usage(), "")


def make_core(alive: bool) -> tuple[WorkerCore, HeldBackend]:
    backend = HeldBackend()

    async def scheduler_alive() -> bool:
        return alive

    core = WorkerCore(backend, worker_id="w1", clock=SystemClock(), alive=scheduler_alive)
    return core, backend


def subtask(subtask_id: str = "s1") -> Subtask:
    return Subtask("r1", subtask_id, "sentiment", {"text": "fine"})


async def ended(backend: HeldBackend) -> None:
    """Wait, for a bounded time, for the backend's run to finish or stop."""
    await asyncio.wait_for(backend.ended.wait(), 10.0)


async def test_a_subtask_answered_before_its_deadline_returns_its_output() -> None:
    core, backend = make_core(alive=True)
    run = asyncio.ensure_future(core.execute(subtask(), core.clock.now() + LONG))
    await backend.started.wait()
    backend.release.set()
    outcome = await run
    assert outcome.output == {"label": "neutral", "score": 0.0} and not outcome.replayed


async def test_a_deadline_that_passes_fails_the_call_and_stops_the_run() -> None:
    core, backend = make_core(alive=True)
    with pytest.raises(DeadlineExceeded, match="passed its deadline"):
        await core.execute(subtask(), core.clock.now() + SHORT)
    await ended(backend)
    assert backend.cancelled == ["fine"]
    assert core.health().in_flight == 0
    # Nothing was kept: a repeat runs again.
    backend.release.set()
    assert not (await core.execute(subtask(), core.clock.now() + LONG)).replayed


async def test_a_cancelled_call_stops_its_run_when_the_scheduler_is_alive() -> None:
    core, backend = make_core(alive=True)
    run = asyncio.ensure_future(core.execute(subtask(), core.clock.now() + LONG))
    await backend.started.wait()
    run.cancel()
    await ended(backend)
    assert backend.cancelled == ["fine"]
    with pytest.raises(asyncio.CancelledError):
        await run


async def test_a_cancelled_call_finishes_detached_and_is_kept_when_the_scheduler_is_gone() -> None:
    core, backend = make_core(alive=False)
    run = asyncio.ensure_future(core.execute(subtask(), core.clock.now() + LONG))
    await backend.started.wait()
    run.cancel()
    await asyncio.sleep(0)
    backend.release.set()
    await ended(backend)
    assert backend.finished == ["fine"]
    replay = await core.execute(subtask(), core.clock.now() + LONG)
    assert replay.replayed and backend.cancelled == []


async def test_a_detached_subtask_stops_at_its_call_deadline() -> None:
    core, backend = make_core(alive=False)
    run = asyncio.ensure_future(core.execute(subtask(), core.clock.now() + SHORT))
    await backend.started.wait()
    run.cancel()
    await ended(backend)
    assert backend.cancelled == ["fine"]
    assert backend.finished == []


async def test_a_sim_backend_without_latency_answers_without_suspending() -> None:
    backend = SimulatedBackend(EchoBackend(), SimulatedProfile(latency=0.0, sigma=0.0, seed=1))
    call = backend.run(SKILLS["sentiment"], {"text": "fine"})
    # One step runs it to the end: sleeping 0 s would have given up the loop first.
    with pytest.raises(StopIteration) as stopped:
        call.send(None)
    result: BackendResult = stopped.value.value
    assert result.output == {"label": "neutral", "score": 0.0} and result.model == "sim-echo"


async def test_a_wait_on_the_real_clock_takes_no_task_of_its_own() -> None:
    core, backend = make_core(alive=True)
    before = len(asyncio.all_tasks())
    run = asyncio.ensure_future(core.execute(subtask(), core.clock.now() + LONG))
    await backend.started.wait()
    await asyncio.sleep(0)
    # The call and its run; the deadline is a timer handle on the loop, not a sleeping task.
    assert len(asyncio.all_tasks()) == before + 2
    backend.release.set()
    await run
