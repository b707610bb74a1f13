"""The worker core on a simulated clock, without a gRPC server: once per subtask, capacity,
cancellation, deadlines."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.convert import outcome_to_proto
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.results import SqliteResults, Stored, input_digest
from agentmesh.agents.subtask import Outcome, Subtask
from agentmesh.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
    Unimplemented,
)
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage
from tests.support.fakes import SimClock, settle

SECONDS = 2.0
"""How long each run of the slow backend takes on the simulated clock."""


class SlowBackend:
    """Answers `sentiment` after SECONDS on the simulated clock; counts runs and their ends."""

    name = "slow"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    def capabilities(self) -> frozenset[str]:
        return frozenset({"sentiment"})

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        text = str(data["text"])
        self.started.append(text)
        try:
            await self.clock.sleep(SECONDS)
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        self.finished.append(text)
        score = len(self.started) / 10
        return BackendResult({"label": "neutral", "score": score}, Usage(input_tokens=3), "")


def make_core(
    capacity: int = 2, alive: bool = True, **kwargs: Any
) -> tuple[WorkerCore, SlowBackend, SimClock]:
    clock = SimClock()
    backend = SlowBackend(clock)

    async def scheduler_alive() -> bool:
        return alive

    core = WorkerCore(
        backend, worker_id="w1", capacity=capacity, clock=clock, alive=scheduler_alive, **kwargs
    )
    return core, backend, clock


def subtask(subtask_id: str = "s1", text: str = "fine", capability: str = "sentiment") -> Subtask:
    return Subtask("r1", subtask_id, capability, {"text": text})


async def test_a_subtask_runs_and_reports_its_output_and_its_duration_on_the_clock() -> None:
    core, backend, clock = make_core()
    run = asyncio.ensure_future(core.execute(subtask()))
    await clock.advance(SECONDS)
    outcome = await run
    assert outcome == Outcome({"label": "neutral", "score": 0.1}, Usage(input_tokens=3), "", 2.0)
    assert backend.finished == ["fine"]


async def test_a_repeat_returns_the_first_result_without_running_again() -> None:
    core, backend, clock = make_core()
    first = asyncio.ensure_future(core.execute(subtask()))
    await clock.advance(SECONDS)
    original = await first
    again = await core.execute(subtask())
    assert again == Outcome(original.output, original.usage, "", original.duration, replayed=True)
    assert backend.started == ["fine"]


async def test_a_repeat_of_a_running_subtask_waits_for_that_run() -> None:
    core, backend, clock = make_core()
    first = asyncio.ensure_future(core.execute(subtask()))
    await settle()
    second = asyncio.ensure_future(core.execute(subtask()))
    await clock.advance(SECONDS)
    one, two = await first, await second
    assert backend.started == ["fine"]
    assert two.output == one.output and two.replayed and not one.replayed


async def test_the_same_ids_for_other_work_are_refused() -> None:
    core, _, clock = make_core()
    first = asyncio.ensure_future(core.execute(subtask(text="fine")))
    await settle()
    with pytest.raises(FailedPrecondition, match="running") as running:
        await core.execute(subtask(text="awful"))
    assert running.value.reason == "SUBTASK_MISMATCH"
    await clock.advance(SECONDS)
    await first
    with pytest.raises(FailedPrecondition, match="finished"):
        await core.execute(subtask(text="awful"))


async def test_capacity_is_honoured_and_the_rest_wait_as_the_queue() -> None:
    core, backend, clock = make_core(capacity=2)
    runs = [asyncio.ensure_future(core.execute(subtask(f"s{i}", f"t{i}"))) for i in range(5)]
    await settle()
    assert backend.started == ["t0", "t1"]
    health = core.health()
    assert (health.in_flight, health.queue_length, health.capacity) == (2, 3, 2)
    await clock.advance(SECONDS)
    assert len(backend.started) == 4 and core.health().in_flight == 2
    await clock.advance(SECONDS)
    await clock.advance(SECONDS)
    assert all(run.done() for run in runs)
    assert backend.finished == ["t0", "t1", "t2", "t3", "t4"]
    assert core.health().in_flight == 0 and core.health().queue_length == 0


async def test_a_cancelled_subtask_stops_when_the_scheduler_is_alive() -> None:
    core, backend, clock = make_core(capacity=1, alive=True)
    run = asyncio.ensure_future(core.execute(subtask()))
    waiting = asyncio.ensure_future(core.execute(subtask("s2", "next")))
    await settle()
    run.cancel()
    await settle()
    assert backend.cancelled == ["fine"]
    assert backend.started == ["fine", "next"]  # its slot went to the next subtask
    await clock.advance(SECONDS)
    await waiting
    # Nothing was kept for the cancelled one: a repeat runs it again.
    again = asyncio.ensure_future(core.execute(subtask()))
    await clock.advance(SECONDS)
    assert not (await again).replayed
    assert backend.started == ["fine", "next", "fine"]


async def test_a_cancelled_subtask_finishes_and_is_kept_when_the_scheduler_is_gone() -> None:
    core, backend, clock = make_core(alive=False)
    run = asyncio.ensure_future(core.execute(subtask(), deadline=30.0))
    await settle()
    run.cancel()
    await clock.advance(SECONDS)
    assert backend.finished == ["fine"] and backend.cancelled == []
    replay = await core.execute(subtask())
    assert replay.replayed and backend.started == ["fine"]


async def test_a_detached_subtask_stops_at_its_call_deadline() -> None:
    core, backend, clock = make_core(alive=False)
    run = asyncio.ensure_future(core.execute(subtask(), deadline=1.0))
    await settle()
    run.cancel()
    await clock.advance(1.0)
    assert backend.cancelled == ["fine"]


async def test_a_deadline_that_passes_fails_the_call_and_stops_the_run() -> None:
    core, backend, clock = make_core()
    run = asyncio.ensure_future(core.execute(subtask(), deadline=clock.now() + 0.5))
    await clock.advance(0.5)
    with pytest.raises(DeadlineExceeded, match="passed its deadline"):
        await run
    assert backend.cancelled == ["fine"]
    assert core.health().in_flight == 0


async def test_a_deadline_already_past_fails_before_anything_runs() -> None:
    core, backend, clock = make_core()
    clock.advance_to(10.0)
    with pytest.raises(DeadlineExceeded):
        await core.execute(subtask(), deadline=9.0)
    assert backend.started == []


async def test_a_repeat_past_its_deadline_leaves_the_first_run_going() -> None:
    core, backend, clock = make_core()
    first = asyncio.ensure_future(core.execute(subtask()))
    await settle()
    repeat = asyncio.ensure_future(core.execute(subtask(), deadline=clock.now() + 1.0))
    await clock.advance(1.0)
    with pytest.raises(DeadlineExceeded):
        await repeat
    await clock.advance(SECONDS)
    assert not (await first).replayed and backend.cancelled == []


async def test_refusals_name_the_cause() -> None:
    core, backend, _ = make_core()
    with pytest.raises(InvalidArgument) as missing:
        await core.execute(Subtask("", "", "sentiment", {"text": "x"}))
    assert missing.value.reason == "MISSING_ID"
    with pytest.raises(Unimplemented) as other:
        await core.execute(subtask(capability="summarize"))
    assert other.value.reason == "CAPABILITY_NOT_OFFERED"
    with pytest.raises(InvalidArgument) as invalid:
        await core.execute(Subtask("r1", "s9", "sentiment", {"text": 3}))
    assert invalid.value.reason == "INVALID_INPUT"
    assert backend.started == []


async def test_a_draining_core_refuses_new_work_and_lets_running_work_finish() -> None:
    core, _, clock = make_core()
    run = asyncio.ensure_future(core.execute(subtask()))
    await settle()
    drain = asyncio.ensure_future(core.drain(grace=10.0))
    await settle()
    with pytest.raises(Unavailable) as refused:
        await core.execute(subtask("s2"))
    assert refused.value.reason == "DRAINING"
    assert core.health().draining
    await clock.advance(SECONDS)
    await drain
    assert (await run).output["label"] == "neutral"
    assert clock.now() == SECONDS  # the drain ended with the run, not at its grace


async def test_a_result_kept_by_the_earlier_version_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    SqliteResults(path, 10).close()  # the schema
    kept = Outcome({"label": "positive", "score": 0.75}, Usage(1, 2, 0.5), "m", 0.25)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO results (request_id, subtask_id, response, capability, input_digest)"
            " VALUES ('r1', 's1', ?, 'sentiment', ?)",
            (outcome_to_proto(kept).SerializeToString(), input_digest({"text": "fine"})),
        )
    db.close()
    core, backend, _ = make_core(results=SqliteResults(path, 10))
    assert await core.execute(subtask()) == kept.as_replayed()
    assert backend.started == []
    core.close()


def test_stored_results_compare_by_their_work() -> None:
    outcome = Outcome({}, Usage(), "", 0.0)
    assert Stored("sentiment", "d", outcome).answers("sentiment", "d")
