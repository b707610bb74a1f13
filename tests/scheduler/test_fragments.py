"""Offload: which steps follow a step to its worker, how their inputs are wired, and how
the executor records them and falls back when a fragment breaks (fake transport)."""

import asyncio
import random

import pytest

from agentmesh.errors import AgentmeshError, InvalidArgument
from agentmesh.scheduler.calls import NO_DEFAULT, ExecuteResult, Literal, Wire
from agentmesh.scheduler.executor import Executor
from agentmesh.scheduler.fragments import (
    ALWAYS,
    AUTO,
    OFF,
    LoopLoad,
    Offload,
    dependents,
    select,
    wire,
)
from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.policies import RoundRobin
from agentmesh.scheduler.records import new_record
from agentmesh.tiers import Difficulty
from tests.support.fakes import FakeTransport, make_dispatcher, settle


def chain(n: int = 3, capability: str = "a") -> Plan:
    steps = [Step("s0", capability, {"text": Binding(("request.text",))})]
    for i in range(1, n):
        steps.append(
            Step(
                f"s{i}",
                capability,
                {"text": Binding((f"steps.s{i - 1}.text",)), "n": Binding(value=i)},
                depends_on=(f"s{i - 1}",),
            )
        )
    return Plan(tuple(steps), answer={"last": Binding((f"steps.s{n - 1}",))})


def diamond() -> Plan:
    return Plan(
        (
            Step("a", "a"),
            Step("b", "a", depends_on=("a",)),
            Step("c", "a", depends_on=("a",)),
            Step("d", "a", depends_on=("b", "c")),
            Step("e", "a", depends_on=("d", "x")),
            Step("x", "a"),
        )
    )


def test_select_takes_dependents_in_an_order_that_runs_each_after_its_dependencies() -> None:
    plan = diamond()
    chosen = select(
        plan,
        "a",
        dependents(plan),
        can_follow=lambda s: True,
        settled=lambda d: False,
        limit=10,
    )
    assert [s.id for s in chosen] == ["b", "c", "d"]  # e needs x, which is not settled


def test_select_takes_a_step_whose_other_dependency_is_settled_and_keeps_to_the_limit() -> None:
    plan = diamond()
    follow = dependents(plan)
    chosen = select(plan, "a", follow, can_follow=lambda s: True, settled="x".__eq__, limit=10)
    assert [s.id for s in chosen] == ["b", "c", "d", "e"]
    assert [
        s.id
        for s in select(plan, "a", follow, can_follow=lambda s: True, settled="x".__eq__, limit=2)
    ] == ["b", "c"]
    # A step that cannot follow keeps out the steps that need it.
    refused = select(
        plan, "a", follow, can_follow=lambda s: s.id != "c", settled="x".__eq__, limit=10
    )
    assert [s.id for s in refused] == ["b"]


def test_wire_resolves_what_it_can_and_wires_the_rest_in_order() -> None:
    step = Step(
        "s",
        "a",
        {
            "plain": Binding(("request.text",)),
            "first": Binding(("steps.m.text", "request.text", "steps.gone.x")),
            "all": Binding(("request.text", "steps.m.items.0"), collect=True),
            "fallback": Binding(("steps.m.missing",), value=7),
        },
        depends_on=("m", "gone"),
    )
    data, wires = wire(step, {"m"}, {"text": "hi"}, {"gone": {}})
    assert data == {"plain": "hi"}
    by_field = {w.field: w for w in wires}
    first = by_field["first"]
    assert first.sources[0] == "steps.m.text"
    assert isinstance(first.sources[1], Literal) and first.sources[1].value == "hi"
    assert len(first.sources) == 2  # a reference that resolves to nothing is dropped
    assert first.default is NO_DEFAULT
    collected = by_field["all"]
    assert collected.collect and collected.sources[1] == "steps.m.items.0"
    assert by_field["fallback"] == Wire("fallback", ("steps.m.missing",), False, 7)


def test_offload_modes_and_the_loop_load() -> None:
    load = LoopLoad(0.8, 0.005, smoothing=1.0)
    assert not Offload(AUTO, load).active
    load.observe(busy=0.9, lag=0.0)
    assert Offload(AUTO, load).active
    assert not Offload(OFF, load).active
    load.observe(busy=0.1, lag=0.01)
    assert Offload(AUTO, load).active
    load.observe(busy=0.1, lag=0.0)
    assert not Offload(AUTO, load).active
    assert Offload(ALWAYS, LoopLoad()).active
    with pytest.raises(ValueError, match="AGENTMESH_OFFLOAD"):
        Offload("sometimes")


def echo_text(worker, call, attempt) -> ExecuteResult:
    return ExecuteResult({**call.input, "text": f"{call.input.get('text')}+{call.subtask_id}"})


def make_executor(transport: FakeTransport, offload: Offload, **kw) -> Executor:
    dispatcher = make_dispatcher(
        transport,
        policy=RoundRobin(random.Random(1)),
        capabilities=("a", "b"),
        capacity=kw.pop("capacity", 8),
        offload=offload,
        **kw,
    )
    return Executor(dispatcher)


async def execute(executor: Executor, plan: Plan):
    record = new_record("req-1", plan, {"text": "hi"}, 0, 0.0)
    events = []
    await executor.execute(record, 10_000.0, events.append)
    return record, events


async def test_a_chain_runs_as_one_fragment_with_every_step_recorded() -> None:
    transport = FakeTransport(echo_text)
    executor = make_executor(transport, Offload(ALWAYS))
    record, events = await execute(executor, chain(3))
    assert record.state == "SUCCEEDED"
    assert record.answer == {"last": {"text": "hi+s0+s1+s2", "n": 2}}
    # One worker ran all three, wired one to the next.
    assert len({worker for worker, _, _ in transport.calls}) == 1
    assert [s for _, s, _ in transport.calls] == ["s0", "s1", "s2"]
    for subtask in record.subtasks.values():
        assert (subtask.state, subtask.fragment, subtask.attempts) == ("SUCCEEDED", "s0", 1)
    assert [e.kind for e in events if e.subtask_id == "s2"] == ["STARTED", "SUCCEEDED"]
    workers = executor.dispatcher.registry.workers()
    assert all(w.in_flight == 0 for w in workers)


async def test_without_offload_each_step_goes_alone() -> None:
    for offload in (Offload(OFF), Offload(AUTO, LoopLoad())):
        transport = FakeTransport(echo_text)
        record, _ = await execute(make_executor(transport, offload), chain(3))
        assert record.state == "SUCCEEDED"
        assert [s.fragment for s in record.subtasks.values()] == ["", "", ""]
        assert len({worker for worker, _, _ in transport.calls}) == 2  # round robin


async def test_a_step_that_fails_in_its_fragment_is_retried_alone_and_so_are_the_rest() -> None:
    failed = []

    def once_bad(worker, call, attempt) -> ExecuteResult:
        if call.subtask_id == "s1" and not failed:
            failed.append(worker.worker_id)
            raise AgentmeshError("output failed its schema", reason="OUTPUT_INVALID")
        return echo_text(worker, call, attempt)

    transport = FakeTransport(once_bad)
    record, events = await execute(make_executor(transport, Offload(ALWAYS)), chain(3))
    assert record.state == "SUCCEEDED"
    assert record.answer == {"last": {"text": "hi+s0+s1+s2", "n": 2}}
    s0, s1, s2 = (record.subtasks[f"s{i}"] for i in range(3))
    assert (s0.fragment, s0.attempts) == ("s0", 1)
    assert (s1.fragment, s1.attempts) == ("", 2)  # its retry, alone
    assert s2.attempts == 2 and s2.state == "SUCCEEDED"
    retried = [e.subtask_id for e in events if e.kind == "RETRIED"]
    assert retried == ["s1", "s2"]
    # Each step completed once.
    assert [e.subtask_id for e in events if e.kind == "SUCCEEDED"].count("s1") == 1


async def test_a_fragment_step_refused_for_its_input_fails_the_request_as_alone() -> None:
    def refuse_s1(worker, call, attempt) -> ExecuteResult:
        if call.subtask_id == "s1":
            raise InvalidArgument("input does not match the schema", [])
        return echo_text(worker, call, attempt)

    executor = make_executor(FakeTransport(refuse_s1), Offload(ALWAYS))
    record, _ = await execute(executor, chain(3))
    assert record.state == "FAILED"
    assert record.error is not None and record.error.code == "INVALID_ARGUMENT"
    assert record.subtasks["s1"].attempts == 2  # the fragment's, then its own
    assert record.subtasks["s2"].state == "CANCELLED"
    assert all(w.in_flight == 0 for w in executor.dispatcher.registry.workers())


async def test_a_cancelled_request_frees_every_slot_its_fragment_took() -> None:
    transport = FakeTransport(echo_text, delay=3600)
    executor = make_executor(transport, Offload(ALWAYS))
    record = new_record("req-1", chain(4), {"text": "hi"}, 0, 0.0)
    task = asyncio.create_task(executor.execute(record, 10_000.0, lambda e: None))
    await settle()
    assert sum(w.in_flight for w in executor.dispatcher.registry.workers()) == 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert record.state == "CANCELLED"
    assert all(w.in_flight == 0 for w in executor.dispatcher.registry.workers())


async def test_nuanced_steps_and_steps_of_other_capabilities_stay_out() -> None:
    plan = Plan(
        (
            Step("s0", "a"),
            Step("s1", "a", depends_on=("s0",), difficulty=Difficulty.NUANCED),
            Step("s2", "b", depends_on=("s0",)),
        )
    )
    transport = FakeTransport(echo_text)
    executor = make_executor(transport, Offload(ALWAYS))
    record, _ = await execute(executor, plan)
    assert record.state == "SUCCEEDED"
    assert record.subtasks["s1"].fragment == ""  # nuanced: dispatched alone
    assert record.subtasks["s2"].fragment == "s0"  # the worker offers b too
