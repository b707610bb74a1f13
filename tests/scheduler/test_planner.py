"""Planning a goal through a planner worker, with a fake transport."""

import pytest

from agentmesh.errors import InvalidArgument, Unavailable
from agentmesh.scheduler.calls import ExecuteResult
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.planner import plan_from_output, planner_input
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.server.skills import SKILLS
from tests.support.fakes import FakeClock, FakeTransport

GOOD_PLAN = {
    "steps": [
        {
            "id": "summary",
            "capability": "summarize",
            "inputs": {"text": "request.text"},
            "depends_on": [],
        },
        {
            "id": "mood",
            "capability": "sentiment",
            "inputs": {"text": "steps.summary.summary"},
            "depends_on": ["summary"],
            "difficulty": "nuanced",
        },
    ],
    "answer": {"summary": "steps.summary.summary", "mood": "steps.mood.label"},
}


def core_with(planner_output: dict, capabilities=("plan", "summarize", "sentiment")):
    def behaviour(worker, call, attempt):
        if call.capability == "plan":
            behaviour.asked = call.input
            return ExecuteResult(planner_output)
        return ExecuteResult({"summary": "short", "label": "neutral", "score": 0.0})

    core = SchedulerCore(SchedulerConfig(), FakeTransport(behaviour), clock=FakeClock())
    spec = WorkerSpec("llm", "127.0.0.1:1", frozenset(capabilities), capacity=4, tier=3)
    core.register(spec)
    return core, behaviour


def test_planner_input_lists_the_capabilities_but_itself() -> None:
    skills = {name: SKILLS[name] for name in ("plan", "summarize")}
    asked = planner_input("goal", {"text": "x", "lang": "de"}, skills)
    assert asked["input_fields"] == ["lang", "text"]
    assert [c["name"] for c in asked["capabilities"]] == ["summarize"]
    assert asked["capabilities"][0]["description"]


def test_plan_from_output() -> None:
    plan = plan_from_output(GOOD_PLAN)
    assert [s.id for s in plan.steps] == ["summary", "mood"]
    assert plan.step("mood").difficulty == 2
    assert plan.step("mood").inputs["text"].refs == ("steps.summary.summary",)


async def test_a_goal_is_planned_and_run() -> None:
    core, behaviour = core_with(GOOD_PLAN)
    record = await core.submit("goal-1", Source(goal="summarise and judge"), {"text": "Hello."})
    assert record.state == "SUCCEEDED"
    assert record.answer == {"summary": "short", "mood": "neutral"}
    assert behaviour.asked["goal"] == "summarise and judge"
    assert {c["name"] for c in behaviour.asked["capabilities"]} == {"summarize", "sentiment"}


async def test_a_plan_naming_a_capability_nobody_offers_is_refused() -> None:
    bad = {**GOOD_PLAN, "steps": [{**GOOD_PLAN["steps"][0], "capability": "translate"}]}
    core, _ = core_with(bad)
    with pytest.raises(InvalidArgument) as error:
        await core.submit("", Source(goal="translate it"), {"text": "Hello."})
    assert error.value.reason == "PLANNER_INVALID_PLAN"
    assert "translate" in error.value.message


async def test_no_planner_is_unavailable() -> None:
    core, _ = core_with(GOOD_PLAN, capabilities=("summarize",))
    with pytest.raises(Unavailable, match="plan"):
        await core.submit("", Source(goal="anything"), {"text": "Hello."})
