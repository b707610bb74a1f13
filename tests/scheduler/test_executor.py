"""DAG execution with a fake transport: parallelism, data flow, skips, failures."""

import asyncio
import random

from agentmesh.errors import InvalidArgument
from agentmesh.scheduler.calls import ExecuteResult
from agentmesh.scheduler.executor import Executor
from agentmesh.scheduler.plans import NOT_EQUALS, Binding, Condition, Plan, Step
from agentmesh.scheduler.policies import RoundRobin
from agentmesh.scheduler.records import new_record
from tests.support.fakes import FakeTransport, fail_with, make_dispatcher


def executor(transport: FakeTransport, capabilities=("a", "b", "c")) -> Executor:
    dispatcher = make_dispatcher(
        transport, policy=RoundRobin(random.Random(1)), capabilities=capabilities, capacity=8
    )
    return Executor(dispatcher)


def by_capability(worker, call, attempt) -> ExecuteResult:
    return ExecuteResult({"cap": call.capability, "got": call.input})


async def run(plan: Plan, transport: FakeTransport, data=None, **kw):
    record = new_record("req-1", plan, data or {"text": "hi"}, 0, 0.0)
    events = []
    await executor(transport, **kw).execute(record, 10_000.0, events.append)
    return record, events


async def test_independent_steps_run_in_parallel_and_results_flow_to_dependents() -> None:
    in_flight = 0
    peak = 0

    class Tracking(FakeTransport):
        async def execute(self, worker, call, attempt, timeout):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return by_capability(worker, call, attempt)

    plan = Plan(
        steps=(
            Step("x", "a", {"text": Binding(("request.text",))}),
            Step("y", "b", {"text": Binding(("request.text",))}),
            Step(
                "z",
                "c",
                {"from_x": Binding(("steps.x.cap",)), "from_y": Binding(("steps.y",))},
                depends_on=("x", "y"),
            ),
        ),
        answer={"final": Binding(("steps.z.got",))},
    )
    record, _ = await run(plan, Tracking())
    assert record.state == "SUCCEEDED"
    assert peak == 2  # x and y together, z after both
    assert record.answer == {
        "final": {"from_x": "a", "from_y": {"cap": "b", "got": {"text": "hi"}}}
    }
    assert [record.subtasks[s].state for s in "xyz"] == ["SUCCEEDED"] * 3


async def test_optional_step_without_worker_is_skipped_with_reason() -> None:
    plan = Plan(
        steps=(
            Step("draft", "a", {"text": Binding(("request.text",))}),
            Step(
                "translate",
                "translate",
                {"text": Binding(("steps.draft.cap",))},
                depends_on=("draft",),
                optional=True,
            ),
        ),
        answer={"reply": Binding(("steps.translate.text", "steps.draft.cap"))},
    )
    record, events = await run(plan, FakeTransport(by_capability))
    assert record.state == "SUCCEEDED"
    skipped = record.subtasks["translate"]
    assert skipped.state == "SKIPPED"
    assert "no worker offers capability 'translate'" in skipped.reason
    assert record.answer == {"reply": "a"}  # fell back to the untranslated draft
    assert any(e.kind == "SKIPPED" and e.subtask_id == "translate" for e in events)


async def test_required_step_without_worker_fails_unavailable_naming_capability() -> None:
    plan = Plan(steps=(Step("translate", "translate"),))
    record, _ = await run(plan, FakeTransport(by_capability))
    assert record.state == "FAILED"
    assert record.error.code == "UNAVAILABLE"
    assert "translate" in record.error.message
    assert record.error.metadata["capability"] == "translate"


async def test_condition_false_skips_the_step() -> None:
    plan = Plan(
        steps=(
            Step("lang", "a"),
            Step(
                "translate",
                "b",
                depends_on=("lang",),
                when=Condition("steps.lang.cap", NOT_EQUALS, "a"),
            ),
        )
    )
    record, _ = await run(plan, FakeTransport(by_capability))
    assert record.subtasks["translate"].state == "SKIPPED"
    assert "condition" in record.subtasks["translate"].reason


async def test_a_failing_required_step_fails_the_request_and_cancels_the_rest() -> None:
    class Mixed(FakeTransport):
        async def execute(self, worker, call, attempt, timeout):
            if call.capability == "a":
                raise InvalidArgument("input rejected")
            await asyncio.sleep(3600)

    plan = Plan(
        steps=(Step("bad", "a"), Step("slow", "b"), Step("after", "c", depends_on=("slow",)))
    )
    record, _ = await run(plan, Mixed())
    assert record.state == "FAILED"
    assert record.error.code == "INVALID_ARGUMENT"
    assert "step 'bad'" in record.error.message
    assert record.subtasks["bad"].state == "FAILED"
    assert record.subtasks["slow"].state == "CANCELLED"
    assert record.subtasks["after"].state == "CANCELLED"


async def test_a_failing_optional_step_does_not_fail_the_request() -> None:
    def behaviour(worker, call, attempt):
        if call.capability == "b":
            return fail_with(InvalidArgument("no"))
        return by_capability(worker, call, attempt)

    plan = Plan(steps=(Step("x", "a"), Step("y", "b", optional=True)))
    record, _ = await run(plan, FakeTransport(behaviour))
    assert record.state == "SUCCEEDED"
    assert record.subtasks["y"].state == "FAILED"
    assert record.subtasks["y"].error.code == "INVALID_ARGUMENT"


async def test_cancelling_the_request_cancels_its_subtasks() -> None:
    transport = FakeTransport(delay=3600)
    ex = executor(transport)
    record = new_record("req-2", Plan(steps=(Step("x", "a"), Step("y", "b"))), {"t": 1}, 0, 0.0)
    task = asyncio.create_task(ex.execute(record, 10_000.0, lambda e: None))
    await asyncio.sleep(0.01)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert record.state == "CANCELLED"
    assert {s.state for s in record.subtasks.values()} == {"CANCELLED"}
    assert all(w.in_flight == 0 for w in ex.dispatcher.registry.workers())


async def test_a_resumed_request_does_not_run_finished_steps_again() -> None:
    transport = FakeTransport(by_capability)
    plan = Plan(
        steps=(
            Step("x", "a", {"text": Binding(("request.text",))}),
            Step("y", "b", {"from_x": Binding(("steps.x.cap",))}, depends_on=("x",)),
        ),
        answer={"y": Binding(("steps.y.got",))},
    )
    record = new_record("req-r", plan, {"text": "hi"}, 0, 0.0)
    record.subtasks["x"].state = "SUCCEEDED"
    record.subtasks["x"].output = {"cap": "from before the restart"}
    await executor(transport).execute(record, 10_000.0, lambda e: None)
    assert record.state == "SUCCEEDED"
    assert [c[1] for c in transport.calls] == ["y"]
    assert record.answer == {"y": {"from_x": "from before the restart"}}


async def test_request_priority_applies_to_workflow_steps_unless_a_step_raises_it() -> None:
    """A CRITICAL ticket's steps run at CRITICAL; a step's own priority can only raise it."""
    from agentmesh.scheduler.workflows import WorkflowLibrary

    seen: dict[str, int] = {}

    def record_priority(worker, call, attempt) -> ExecuteResult:
        seen[call.subtask_id] = call.priority
        return ExecuteResult({"ok": True})

    library = WorkflowLibrary.load(None)
    plan = library.decompose("support_ticket", {"text": "My order never came."}, 64)
    capabilities = {step.capability for step in plan.steps} - {"translate"}
    critical, low, high = 4, 1, 3
    record = new_record("req-1", plan, {"text": "My order never came."}, critical, 0.0)
    await executor(FakeTransport(record_priority), capabilities=capabilities).execute(
        record, 10_000.0, lambda event: None
    )
    assert seen and set(seen.values()) == {critical}

    raised = Plan(
        steps=(
            Step("x", "a", {"text": Binding(("request.text",))}, priority=high),
            Step("y", "b", {"text": Binding(("request.text",))}, priority=low),
            Step("z", "c", {"text": Binding(("request.text",))}),
        )
    )
    seen.clear()
    record = new_record("req-2", raised, {"text": "hi"}, low, 0.0)
    await executor(FakeTransport(record_priority)).execute(record, 10_000.0, lambda event: None)
    assert seen == {"x": high, "y": low, "z": low}
    seen.clear()
    record = new_record("req-3", raised, {"text": "hi"}, 0, 0.0)
    await executor(FakeTransport(record_priority)).execute(record, 10_000.0, lambda event: None)
    assert seen == {"x": high, "y": 2, "z": 2}  # unspecified is NORMAL; a step cannot lower it


async def test_a_finished_request_never_shows_a_step_still_running() -> None:
    """Seen at every turn of the loop: once the request has its outcome, every step is final."""

    class Mixed(FakeTransport):
        async def execute(self, worker, call, attempt, timeout):
            if call.capability == "a":
                await asyncio.sleep(0.01)
                raise InvalidArgument("input rejected")
            await asyncio.sleep(3600)

    plan = Plan(
        steps=(Step("bad", "a"), Step("slow", "b"), Step("after", "c", depends_on=("slow",)))
    )
    record = new_record("req-f", plan, {"text": "hi"}, 0, 0.0)
    seen: list[tuple[str, set[str]]] = []
    running = asyncio.create_task(executor(Mixed()).execute(record, 10_000.0, lambda e: None))
    while not running.done():
        seen.append((record.state, {s.state for s in record.subtasks.values()}))
        await asyncio.sleep(0)
    unfinished = {"PENDING", "QUEUED", "RUNNING"}
    assert [states for state, states in seen if state != "RUNNING" and states & unfinished] == []
    assert record.state == "FAILED"
    for step in ("slow", "after"):
        assert record.subtasks[step].state == "CANCELLED"
        assert "step 'bad'" in record.subtasks[step].reason


async def test_a_step_refused_for_its_input_fails_the_request_with_field_violations() -> None:
    from agentmesh.errors import FieldViolation

    def behaviour(worker, call, attempt):
        return fail_with(
            InvalidArgument("input for a is invalid", [FieldViolation("input.text", "required")])
        )

    record, _ = await run(Plan(steps=(Step("first", "a"),)), FakeTransport(behaviour))
    assert record.error is not None and record.error.code == "INVALID_ARGUMENT"
    assert record.error.violations == (FieldViolation("steps.first.input.text", "required"),)
    error = record.error.to_error(request_id="req-1")
    assert isinstance(error, InvalidArgument) and error.violations == record.error.violations
    assert error.metadata == {"step": "first", "capability": "a", "request_id": "req-1"}


async def test_an_unexpected_error_fails_the_request_with_internal() -> None:
    def behaviour(worker, call, attempt):
        raise KeyError("a bug")

    record, _ = await run(Plan(steps=(Step("x", "a"), Step("y", "b"))), FakeTransport(behaviour))
    assert record.state == "FAILED" and record.error is not None
    assert record.error.code == "INTERNAL"
    assert {s.state for s in record.subtasks.values()} <= {"FAILED", "CANCELLED"}


async def test_a_failed_step_is_the_cause_and_its_dependents_never_run() -> None:
    from agentmesh.errors import NotFound

    dispatched: list[str] = []

    def behaviour(worker, call, attempt):
        dispatched.append(call.subtask_id)
        if call.capability == "a":
            return fail_with(NotFound("order ORD-9 not found"))
        return by_capability(worker, call, attempt)

    # The dependent's contract requires the field the failed step would have given: were it
    # tried, its input check would fail it first, and the request would name the wrong cause.
    mood = Step(
        "mood", "sentiment", inputs={"text": Binding(("steps.order.text",))}, depends_on=("order",)
    )
    plan = Plan(steps=(Step("order", "a"), mood))
    record, _ = await run(plan, FakeTransport(behaviour), capabilities=("a", "sentiment"))
    assert record.state == "FAILED"
    assert record.error is not None and record.error.code == "NOT_FOUND"
    assert "step 'order'" in record.error.message
    assert dispatched == ["order"]
    assert record.subtasks["mood"].state == "CANCELLED"
