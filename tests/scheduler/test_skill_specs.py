"""Skill specs sent with registration: completed, held per capability, conflicts refused,
and the live contract used to check inputs before dispatch, to plan and to route."""

from __future__ import annotations

from typing import Any

import pytest

from agentmesh.errors import FailedPrecondition, InvalidArgument
from agentmesh.scheduler import convert
from agentmesh.scheduler.calls import ExecuteResult
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.scheduler.tiers import BUILTIN, LARGE, NUANCED
from agentmesh.server.skills import ANY_OBJECT, SKILLS, Skill
from agentmesh.server.skillspecs import skill_from_proto, skill_to_proto
from agentmesh.v1 import scheduler_pb2
from tests.support.fakes import FakeClock, FakeTransport

REVERSE_IN = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
}
REVERSE_OUT = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}


def reverse_text(input_schema: dict[str, Any] = REVERSE_IN, **fields: Any) -> Skill:
    return Skill(
        name="reverse_text",
        description=fields.pop("description", "Reverse a text, character by character."),
        input_schema=input_schema,
        output_schema=REVERSE_OUT,
        instructions="",
        **fields,
    )


def worker(
    worker_id: str,
    capabilities: tuple[str, ...] = ("reverse_text",),
    skills: tuple[Skill, ...] = (),
    tier: int = 0,
) -> WorkerSpec:
    return WorkerSpec(
        worker_id,
        f"127.0.0.1:{7000 + len(worker_id)}",
        frozenset(capabilities),
        capacity=2,
        tier=tier,
        skills=skills,
    )


def make_core(transport: FakeTransport | None = None) -> SchedulerCore:
    return SchedulerCore(
        SchedulerConfig(worker_wait=0.0), transport or FakeTransport(), clock=FakeClock()
    )


# -- what the registry holds -------------------------------------------------------------


def test_declared_catalogue_and_open_specs_complete_a_registration() -> None:
    core = make_core()
    core.register(worker("w1", ("reverse_text", "sentiment", "shout"), (reverse_text(),)))
    registry = core.registry
    assert registry.skill("reverse_text") == reverse_text()
    assert registry.skill("sentiment") is SKILLS["sentiment"]  # a built-in name, no spec sent
    shout = registry.skill("shout")  # neither declared nor built-in: any object
    assert shout is not None
    assert shout.input_schema == ANY_OBJECT and shout.output_schema == ANY_OBJECT
    assert shout.max_input_bytes == 0
    assert set(registry.skills()) == {"reverse_text", "sentiment", "shout"}
    assert registry.skill("summarize") is None  # nobody offers it


def test_a_second_worker_with_other_schemas_is_refused_naming_both() -> None:
    core = make_core()
    core.register(worker("w1", skills=(reverse_text(),)))
    other = reverse_text({**REVERSE_IN, "required": ["text", "mode"]})
    with pytest.raises(FailedPrecondition) as raised:
        core.register(worker("w2", skills=(other,)))
    error = raised.value
    assert error.reason == "SKILL_CONFLICT"
    assert "reverse_text" in error.message and "w1" in error.message and "w2" in error.message
    assert error.metadata == {
        "capability": "reverse_text",
        "worker_id": "w2",
        "conflicting_worker_id": "w1",
    }
    assert core.registry.get("w2") is None  # refused, not half-registered
    assert core.registry.skill("reverse_text") == reverse_text()


def test_the_same_schemas_with_another_description_or_budget_are_one_contract() -> None:
    core = make_core()
    core.register(worker("w1", skills=(reverse_text(),)))
    core.register(worker("w2", skills=(reverse_text(description="Mirror.", max_input_bytes=9),)))
    assert {r.worker_id for r in core.registry.offering("reverse_text")} == {"w1", "w2"}


def test_schemas_compare_as_canonical_json_not_as_written() -> None:
    core = make_core()
    core.register(worker("w1", skills=(reverse_text(),)))
    reordered = {"required": ["text"], "properties": REVERSE_IN["properties"], "type": "object"}
    core.register(worker("w2", skills=(reverse_text(reordered),)))
    # A spec sent over the wire (whole numbers as doubles) is the same contract.
    sent = skill_from_proto(skill_to_proto(reverse_text()))
    core.register(worker("w3", skills=(sent,)))
    assert len(core.registry.offering("reverse_text")) == 3


def test_a_worker_that_sends_no_spec_for_a_builtin_name_conflicts_with_a_different_one() -> None:
    core = make_core()
    core.register(worker("old", ("sentiment",)))  # the catalogue's sentiment
    mine = Skill("sentiment", "Mine.", REVERSE_IN, REVERSE_OUT, "")
    with pytest.raises(FailedPrecondition, match="'old'"):
        core.register(worker("new", ("sentiment",), (mine,)))
    # The catalogue's own spec, sent explicitly, is the same contract.
    core.register(worker("new", ("sentiment",), (SKILLS["sentiment"],)))


def test_a_contract_goes_with_the_last_worker_offering_it() -> None:
    core = make_core()
    core.register(worker("w1", skills=(reverse_text(),)))
    other = reverse_text({"type": "object"})
    # Alone with the capability, a worker may change its contract by registering again.
    core.register(worker("w1", skills=(other,)))
    assert core.registry.skill("reverse_text") == other
    core.registry.remove("w1")
    assert core.registry.skill("reverse_text") is None
    core.register(worker("w2", skills=(reverse_text(),)))
    assert core.registry.skill("reverse_text") == reverse_text()


@pytest.mark.parametrize(
    ("skill", "field"),
    [
        (Skill("nope", "", {}, {}, ""), "skills[0].name"),
        (reverse_text({"type": "objekt"}), "skills[0].input_schema"),
        (reverse_text({"properties": {"text": {"minLength": -1}}}), "skills[0].input_schema"),
        (reverse_text(max_input_bytes=-1), "skills[0].max_input_bytes"),
    ],
)
def test_a_bad_spec_is_refused_naming_its_field(skill: Skill, field: str) -> None:
    core = make_core()
    with pytest.raises(InvalidArgument) as raised:
        core.register(worker("w1", skills=(skill,)))
    assert raised.value.reason == "INVALID_SKILL_SPEC"
    assert [v.field for v in raised.value.violations] == [field]
    assert core.registry.get("w1") is None


def test_two_specs_for_one_capability_are_refused() -> None:
    core = make_core()
    with pytest.raises(InvalidArgument) as raised:
        core.register(worker("w1", skills=(reverse_text(), reverse_text())))
    assert [v.field for v in raised.value.violations] == ["skills[1].name"]


def test_list_workers_carries_the_specs_the_scheduler_holds() -> None:
    core = make_core()
    record = core.register(worker("w1", ("reverse_text", "sentiment"), (reverse_text(),)))
    status = convert.worker_status_to_proto(record, 0.0, 0.0)
    assert [s.name for s in status.skills] == ["reverse_text", "sentiment"]
    assert skill_from_proto(status.skills[1]).schemas_key == SKILLS["sentiment"].schemas_key
    assert status.skills[0].description == reverse_text().description
    # And a registration's specs come in through the same conversion.
    request = scheduler_pb2.RegisterRequest(skills=[skill_to_proto(reverse_text())])
    spec = convert.worker_spec_from_proto(request.worker, request.skills)
    assert spec.skills[0].schemas_key == reverse_text().schemas_key


# -- the live contract at work ------------------------------------------------------------


def reversing(behaviour_calls: list[dict[str, Any]]) -> FakeTransport:
    def behaviour(worker: Any, call: Any, attempt: int) -> ExecuteResult:
        behaviour_calls.append(call.input)
        if call.capability == "plan":
            return ExecuteResult({"steps": []})
        return ExecuteResult({"text": str(call.input.get("text", ""))[::-1]})

    return FakeTransport(behaviour)


def rev_plan(binding: Binding, *, after: Step | None = None) -> Plan:
    rev = Step(
        "rev",
        "reverse_text",
        {"text": binding},
        depends_on=(after.id,) if after else (),
    )
    return Plan(steps=(after, rev) if after else (rev,), answer={"out": Binding(("steps.rev",))})


async def test_a_custom_capabilitys_input_is_checked_at_admission() -> None:
    calls: list[dict[str, Any]] = []
    core = make_core(reversing(calls))
    core.register(worker("w1", skills=(reverse_text(),)))
    record = await core.submit(
        "", Source(plan=rev_plan(Binding(("request.text",)))), {"text": "abc"}
    )
    assert record.answer == {"out": {"text": "cba"}}
    with pytest.raises(InvalidArgument) as raised:
        await core.submit("", Source(plan=rev_plan(Binding(("request.text",)))), {"text": 5})
    error = raised.value
    assert error.reason == "INVALID_INPUT" and "'rev'" in error.message
    assert [v.field for v in error.violations] == ["steps.rev.input.text"]
    assert len(calls) == 1  # the refused request reached no worker


async def test_a_custom_capabilitys_input_from_a_step_is_checked_before_dispatch() -> None:
    calls: list[dict[str, Any]] = []
    core = make_core(reversing(calls))
    core.register(worker("w1", ("reverse_text", "sentiment"), (reverse_text(),)))
    mood = Step("mood", "sentiment", {"text": Binding(("request.text",))})
    # The sentiment output's score (a number) is not a text.
    plan = rev_plan(Binding(("steps.mood.score",), value=1), after=mood)
    record = await core.submit("", Source(plan=plan), {"text": "fine"})
    assert record.state == "FAILED"
    rev = record.subtasks["rev"]
    assert rev.error is not None and rev.error.code == "INVALID_ARGUMENT"
    assert rev.reason.startswith("its input is not a valid input for reverse_text: input.text")
    assert calls == [{"text": "fine"}]  # only the sentiment step reached a worker


async def test_dispatch_checks_the_live_contract_and_its_budget() -> None:
    calls: list[dict[str, Any]] = []
    core = make_core(reversing(calls))
    core.register(worker("w1", skills=(reverse_text(max_input_bytes=64),)))
    with pytest.raises(InvalidArgument) as raised:
        await core.dispatch("", "reverse_text", {"txt": "abc"})
    assert "'text' is a required property" in raised.value.message
    with pytest.raises(InvalidArgument) as raised:
        await core.dispatch("", "reverse_text", {"text": "x" * 100})
    assert raised.value.reason == "INPUT_TOO_LARGE"
    assert calls == []
    outcome = await core.dispatch("", "reverse_text", {"text": "abc"})
    assert outcome.result.output == {"text": "cba"}


async def test_an_open_capability_takes_any_object() -> None:
    calls: list[dict[str, Any]] = []
    core = make_core(reversing(calls))
    core.register(worker("w1", ("shout",)))
    await core.dispatch("", "shout", {"anything": [1, 2], "text": "a" * 100_000})
    assert len(calls) == 1


async def test_the_planner_is_shown_the_live_skills_and_their_descriptions() -> None:
    calls: list[dict[str, Any]] = []
    core = make_core(reversing(calls))
    core.register(worker("w1", ("reverse_text", "plan", "summarize"), (reverse_text(),)))
    with pytest.raises(InvalidArgument):  # the fake planner's plan is empty
        await core.submit("", Source(goal="reverse it"), {"text": "abc"})
    assert calls[0]["capabilities"] == [
        {"name": "reverse_text", "description": reverse_text().description},
        {"name": "summarize", "description": SKILLS["summarize"].description},
    ]


async def test_a_step_without_difficulty_takes_its_skills() -> None:
    transport = FakeTransport(lambda w, c, a: ExecuteResult({"text": "x"}))
    core = make_core(transport)
    nuanced = reverse_text(difficulty=NUANCED)
    core.register(worker("cheap", skills=(nuanced,), tier=BUILTIN))
    core.register(worker("large", skills=(nuanced,), tier=LARGE))
    for _ in range(3):
        outcome = await core.dispatch("", "reverse_text", {"text": "abc"})
        assert outcome.worker_id == "large"


def test_a_python_worker_sends_the_contracts_of_the_skills_it_offers() -> None:
    from agentmesh.agents.membership import skill_specs
    from agentmesh.v1 import worker_pb2

    sent = skill_specs(worker_pb2.WorkerInfo(capabilities=["summarize", "sentiment"]))
    assert [s.name for s in sent] == ["summarize", "sentiment"]
    for spec in sent:
        skill = SKILLS[spec.name]
        assert spec.description == skill.description
        assert spec.max_input_bytes == skill.max_input_bytes
        assert skill_from_proto(spec).schemas_key == skill.schemas_key
