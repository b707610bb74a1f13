"""Request ids as idempotency keys: same parameters attach or replay, others are refused.

A core with a fake transport and a real SQLite store file, so that what
holds in memory is checked to hold across a "restart" (a new core on the
same file) as well.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentmesh.errors import AlreadyExists, FailedPrecondition, Unavailable
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.registry import WorkerRecord, WorkerSpec
from agentmesh.scheduler.store import SqliteStore
from tests.support.fakes import FakeClock, FakeTransport
from tests.support.stores import Stores

PLAN = Plan(
    steps=(
        Step("first", "summarize", {"text": Binding(("request.text",))}),
        Step("second", "sentiment", {"text": Binding(("steps.first.text",))}, ("first",)),
    ),
    answer={"label": Binding(("steps.second.text",))},
)
TEXT = {"text": "The parcel came late."}


class Flaky:
    """Echoes its input; fails `capability` with `error` while `failing` is set."""

    def __init__(self, capability: str = "", error: Exception | None = None) -> None:
        self.capability, self.error = capability, error
        self.failing = error is not None
        self.ran: list[str] = []

    def __call__(self, worker: WorkerRecord, call: SubtaskCall, attempt: int) -> ExecuteResult:
        if self.failing and call.capability == self.capability:
            assert self.error is not None
            raise self.error
        self.ran.append(call.subtask_id)
        return ExecuteResult({"text": call.input["text"]})


def make_core(where: Path | Stores, behaviour: Flaky) -> SchedulerCore:
    """A core on the SQLite file `where`, or on the test's store of either kind."""
    store = where.open() if isinstance(where, Stores) else SqliteStore(where)
    core = SchedulerCore(
        SchedulerConfig(), FakeTransport(behaviour), clock=FakeClock(), store=store
    )
    spec = WorkerSpec("w", "127.0.0.1:1", frozenset({"summarize", "sentiment"}), capacity=4)
    core.register(spec)
    return core


async def test_a_repeat_with_the_same_parameters_replays_without_running_again(
    tmp_path: Path,
) -> None:
    worker = Flaky()
    core = make_core(tmp_path / "s.db", worker)
    first = await core.submit("same", Source(plan=PLAN), dict(TEXT), priority=2)
    # Key order of the input does not matter.
    again = await core.submit("same", Source(plan=PLAN), {**TEXT}, priority=2)
    assert first.state == again.state == "SUCCEEDED"
    assert again.answer == first.answer and worker.ran == ["first", "second"]


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"text": "Another text entirely."}},
        {"source": Source(workflow="support_ticket")},
        {"priority": 5},
        {"cost_budget": 0.25},
    ],
    ids=["input", "workflow", "priority", "cost-budget"],
)
async def test_a_repeat_with_other_parameters_is_refused_naming_the_id(
    stores: Stores, change: dict
) -> None:
    worker = Flaky()
    core = make_core(stores, worker)
    await core.submit("reused", Source(plan=PLAN), dict(TEXT))
    call = {"source": Source(plan=PLAN), "data": dict(TEXT), **change}
    with pytest.raises(AlreadyExists) as refused:
        await core.submit("reused", call.pop("source"), call.pop("data"), **call)
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert refused.value.metadata == {"request_id": "reused"}
    assert "reused" in refused.value.message

    # The fingerprint is in the store: a restarted scheduler refuses it too.
    assert core.store is not None
    core.store.close()
    restarted = make_core(stores, Flaky())
    call = {"source": Source(plan=PLAN), "data": dict(TEXT), **change}
    with pytest.raises(AlreadyExists):
        await restarted.submit("reused", call.pop("source"), call.pop("data"), **call)
    replayed = await restarted.submit("reused", Source(plan=PLAN), dict(TEXT))
    assert replayed.state == "SUCCEEDED" and worker.ran == ["first", "second"]


async def test_a_repeat_with_other_parameters_is_refused_while_it_runs(tmp_path: Path) -> None:
    core = make_core(tmp_path / "s.db", Flaky())
    core.dispatcher.transport.delay = 0.05  # type: ignore[attr-defined]
    running = asyncio.create_task(core.submit("busy", Source(plan=PLAN), dict(TEXT)))
    await asyncio.sleep(0.01)
    with pytest.raises(AlreadyExists):
        await core.submit("busy", Source(plan=PLAN), {"text": "other"})
    attached = await core.submit("busy", Source(plan=PLAN), dict(TEXT))
    assert (await running) is attached and attached.state == "SUCCEEDED"


@pytest.mark.parametrize("restart", [False, True], ids=["same-scheduler", "restarted"])
async def test_a_retryable_failure_runs_again_keeping_finished_subtasks(
    stores: Stores, restart: bool
) -> None:
    worker = Flaky("sentiment", Unavailable("no healthy worker", reason="NO_WORKER"))
    core = make_core(stores, worker)
    failed = await core.submit("retry-me", Source(plan=PLAN), dict(TEXT))
    assert failed.state == "FAILED" and failed.error is not None
    assert failed.error.code == "UNAVAILABLE"
    assert worker.ran == ["first"]

    worker.failing = False
    if restart:
        assert core.store is not None
        core.store.close()
        core = make_core(stores, worker)
    again = await core.submit("retry-me", Source(plan=PLAN), dict(TEXT))
    assert again.state == "SUCCEEDED", again.error
    assert again.request_id == "retry-me" and again.answer == {"label": TEXT["text"]}
    assert worker.ran == ["first", "second"]  # the first step was kept, not run again
    assert core.store is not None
    stored = core.store.load("retry-me")
    assert stored is not None and stored.record.state == "SUCCEEDED"


async def test_a_non_retryable_failure_is_returned_again(tmp_path: Path) -> None:
    worker = Flaky("sentiment", FailedPrecondition("budget", reason="BUDGET_EXCEEDED"))
    core = make_core(tmp_path / "s.db", worker)
    failed = await core.submit("final", Source(plan=PLAN), dict(TEXT))
    worker.failing = False
    again = await core.submit("final", Source(plan=PLAN), dict(TEXT))
    assert again.state == "FAILED" and again.error == failed.error
    assert worker.ran == ["first"]


async def test_a_repeat_during_the_recovery_delay_waits_for_the_result(stores: Stores) -> None:
    store = stores.open()
    record = new_record("unfinished", PLAN, dict(TEXT), 0, 0.0)
    store.save_request(record, deadline=4e9)
    store.close()

    worker = Flaky()
    core = make_core(stores, worker)
    assert core.recover(delay=0.05) == 1
    assert (await core.get("unfinished")).state == "RUNNING"  # GetRequest answers at once
    repeat = await core.submit("unfinished", Source(plan=PLAN), dict(TEXT))
    assert repeat.state == "SUCCEEDED" and repeat.answer == {"label": TEXT["text"]}
    assert worker.ran == ["first", "second"]


async def test_a_dispatch_id_reused_with_another_input_is_refused(tmp_path: Path) -> None:
    worker = Flaky()
    core = make_core(tmp_path / "s.db", worker)
    first = await core.dispatch("d-1", "summarize", {"text": "one"})
    again = await core.dispatch("d-1", "summarize", {"text": "one"})
    assert first.result.output == again.result.output == {"text": "one"}
    with pytest.raises(AlreadyExists) as refused:
        await core.dispatch("d-1", "summarize", {"text": "two"})
    assert refused.value.metadata == {"request_id": "d-1"}


async def test_a_request_whose_caller_left_is_run_again_by_a_repeat(tmp_path: Path) -> None:
    worker = Flaky()
    core = make_core(tmp_path / "s.db", worker)
    core.dispatcher.transport.delay = 0.05  # type: ignore[attr-defined]
    first = asyncio.create_task(core.submit("left", Source(plan=PLAN), dict(TEXT)))
    await asyncio.sleep(0.01)
    attached = asyncio.create_task(core.submit("left", Source(plan=PLAN), dict(TEXT)))
    await asyncio.sleep(0.01)
    first.cancel()  # the first caller goes away: its request is cancelled
    record = await attached  # the caller still waiting runs it again, under the same id
    assert record.state == "SUCCEEDED" and record.request_id == "left"
    assert first.cancelled()
