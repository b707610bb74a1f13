"""A request's BASIC view is built without converting its plan or its subtasks at all."""

from __future__ import annotations

import pytest

from agentmesh.scheduler import convert
from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.records import RequestRecord, new_record
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.usage import Usage

PLAN = Plan(
    steps=(
        Step("a", "summarize", {"text": Binding(("request.text",))}),
        Step("b", "sentiment", {"text": Binding(("steps.a.summary",))}, depends_on=("a",)),
    ),
    answer={"summary": Binding(("steps.a.summary",))},
    workflow="demo",
)


def finished_record() -> RequestRecord:
    record = new_record("r1", PLAN, {"text": "hi"}, 0, 100.0, cost_budget=0.5)
    for i, subtask in enumerate(record.subtasks.values()):
        subtask.state, subtask.output, subtask.worker_id = SubtaskState.SUCCEEDED, {"k": i}, "w1"
        subtask.usage, subtask.attempts = Usage(10, 5, 0.01), 1
    record.state, record.answer, record.finished_at = RequestState.SUCCEEDED, {"s": "x"}, 101.0
    return record


def test_basic_converts_neither_the_plan_nor_the_subtasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*_: object) -> None:
        raise AssertionError("converted for a BASIC view")

    monkeypatch.setattr(convert, "plan_to_proto", never)
    monkeypatch.setattr(convert, "subtask_to_proto", never)
    message = convert.request_to_proto(finished_record(), full=False)
    assert not message.HasField("plan") and len(message.subtasks) == 0
    # The summary is all there.
    assert message.request_id == "r1" and message.workflow == "demo"
    assert message.state == convert.REQUEST_STATES[RequestState.SUCCEEDED]
    assert dict(message.answer) == {"s": "x"}
    assert message.usage.input_tokens == 20 and message.usage.cost_usd == pytest.approx(0.02)
    assert message.created_at.seconds == 100 and message.finished_at.seconds == 101
    assert message.cost_budget_usd == 0.5


def test_full_is_the_summary_with_the_plan_and_every_subtask() -> None:
    record = finished_record()
    full = convert.request_to_proto(record)
    assert full == convert.request_to_proto(record, full=True)
    assert [s.id for s in full.plan.steps] == ["a", "b"]
    assert [(s.id, s.worker_id) for s in full.subtasks] == [("a", "w1"), ("b", "w1")]
    basic = convert.request_to_proto(record, full=False)
    full.ClearField("plan")
    full.ClearField("subtasks")
    assert full == basic
