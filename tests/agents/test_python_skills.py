"""Skills written in Python, run by the worker core: the context they get, their output
checked, their exceptions as INTERNAL, their deadline, and the model they may call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest

from agentmesh.agents import SkillContext, skill
from agentmesh.agents.backend import BackendResult
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.llm import ModelBackend, ModelConfig, Repair, Reply
from agentmesh.agents.prices import Price
from agentmesh.agents.pyskills import PythonSkills, WithOwnSkills
from agentmesh.agents.skilldef import SkillDefinition, definition_of
from agentmesh.agents.subtask import Subtask
from agentmesh.errors import AgentmeshError, DeadlineExceeded, FailedPrecondition
from agentmesh.server.skills import SKILLS, Skill
from agentmesh.usage import Usage
from tests.support.fakes import SimClock, settle

TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
seen: list[SkillContext] = []
cancelled: list[str] = []


@skill(name="reverse_text", description="Reverse a text.", input_schema=TEXT, output_schema=TEXT)
async def reverse_text(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    seen.append(context)
    context.logger.info("reversing", extra={"chars": len(input["text"])})
    return {"text": input["text"][::-1]}


@skill(name="explode", description="Always fails.", input_schema=TEXT, output_schema=TEXT)
async def explode(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    raise ValueError(f"cannot handle {input['text']!r}")


@skill(name="sloppy", description="Breaks its schema.", input_schema=TEXT, output_schema=TEXT)
async def sloppy(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    return {"text": 42}


@skill(name="listy", description="Not an object.", input_schema=TEXT, output_schema=TEXT)
async def listy(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    return ["not", "a", "dict"]  # type: ignore[return-value]


@skill(name="forever", description="Never ends.", input_schema=TEXT, output_schema=TEXT)
async def forever(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    seen.append(context)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(input["text"])
        raise
    return {}


TOPIC = {
    "type": "object",
    "properties": {"topic": {"type": "string"}},
    "required": ["topic"],
    "additionalProperties": False,
}


@skill(
    name="topic",
    description="Name a text's topic.",
    input_schema=TEXT,
    output_schema=TOPIC,
    instructions="Name the topic in one word.",
)
async def topic(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    answer = await context.model.generate({"text": input["text"]})
    again = await context.model.generate(
        {"text": input["text"]}, instructions="Again, shorter.", output_schema=TOPIC
    )
    return {"topic": f"{answer['topic']}/{again['topic']}"}


def definitions(*functions: Any) -> dict[str, SkillDefinition]:
    found = {}
    for function in functions:
        definition = definition_of(function)
        assert definition is not None
        found[definition.name] = definition
    return found


OWN = definitions(reverse_text, explode, sloppy, listy, forever, topic)


class Builtin:
    """The configured backend: answers `sentiment`."""

    name = "builtin"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def capabilities(self) -> frozenset[str]:
        return frozenset({"sentiment"})

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        return BackendResult({"label": "neutral", "score": 0.0}, Usage(), "")


class ScriptedModel(ModelBackend):
    """A model backend whose answers come from a script; records the prompts it got."""

    name = "openai"

    def __init__(self, *answers: Any) -> None:
        super().__init__(ModelConfig("openai", "tiny-model"), Price(1.0, 2.0), "key")
        self.answers = list(answers)
        self.prompts: list[tuple[str, Mapping[str, Any], Repair | None]] = []

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        self.prompts.append((skill.instructions, data, repair))
        return Reply(self.answers.pop(0), "", 100, 10, "tiny-model-1")

    def map_error(self, error: Exception) -> AgentmeshError | None:
        return None


def make_core(model: Any = None) -> tuple[WorkerCore, SimClock]:
    clock = SimClock()
    backend = Builtin() if model is None else model
    combined = WithOwnSkills(PythonSkills(OWN, backend), backend)
    core = WorkerCore(
        combined,
        worker_id="w1",
        skills=frozenset(OWN) | {"sentiment"},
        catalogue={**SKILLS, **{n: d.skill for n, d in OWN.items()}},
        clock=clock,
    )
    return core, clock


def call(capability: str, text: str = "stressed", subtask_id: str = "s1") -> Subtask:
    return Subtask("r1", subtask_id, capability, {"text": text}, attempt=2)


async def test_a_skill_runs_with_its_context(caplog: pytest.LogCaptureFixture) -> None:
    core, _ = make_core()
    seen.clear()
    with caplog.at_level(logging.INFO, logger="agentmesh.skills"):
        outcome = await core.execute(call("reverse_text"), deadline=30.0)
    assert outcome.output == {"text": "desserts"} and outcome.usage == Usage()
    context = seen[-1]
    assert (context.skill, context.request_id, context.subtask_id) == ("reverse_text", "r1", "s1")
    assert context.attempt == 2 and context.deadline == 30.0 and context.seconds_left() == 30.0
    assert not context.is_cancelled() and not context.model.available
    assert context.span is not None
    record = next(r for r in caplog.records if r.getMessage() == "reversing")
    assert record.name == "agentmesh.skills.reverse_text"
    assert (vars(record)["skill"], vars(record)["attempt"], vars(record)["chars"]) == (
        "reverse_text",
        2,
        8,
    )
    # The worker offers its own skills with their contracts beside the built-in one.
    assert core.skills["reverse_text"] is OWN["reverse_text"].skill
    assert core.skills["sentiment"] is SKILLS["sentiment"]
    assert (await core.execute(call("sentiment", subtask_id="s2"))).output["label"] == "neutral"


async def test_an_input_against_the_skills_schema_is_refused() -> None:
    core, _ = make_core()
    bad = Subtask("r1", "s1", "reverse_text", {"text": 7})
    with pytest.raises(AgentmeshError) as raised:
        await core.execute(bad)
    assert raised.value.code_name == "INVALID_ARGUMENT" and raised.value.reason == "INVALID_INPUT"


async def test_a_skill_that_raises_is_internal_with_the_exception_and_counts_as_an_error() -> None:
    core, _ = make_core()
    with pytest.raises(AgentmeshError) as raised:
        await core.execute(call("explode"))
    error = raised.value
    assert type(error) is AgentmeshError and error.code_name == "INTERNAL"
    assert error.reason == "SKILL_FAILED"
    assert error.message == "skill explode raised ValueError: cannot handle 'stressed'"
    assert error.metadata == {"capability": "explode", "exception": "ValueError"}
    assert core.health().error_rate > 0
    assert core.metrics.subtasks.labels("explode", "INTERNAL")._value.get() == 1


@pytest.mark.parametrize(
    ("capability", "message"),
    [("sloppy", "output.text: 42 is not of type 'string'"), ("listy", "returned list")],
)
async def test_an_output_that_breaks_the_schema_is_output_invalid(
    capability: str, message: str
) -> None:
    core, _ = make_core()
    with pytest.raises(AgentmeshError) as raised:
        await core.execute(call(capability))
    assert raised.value.reason == "OUTPUT_INVALID" and raised.value.code_name == "INTERNAL"
    assert message in raised.value.message and raised.value.retryable


async def test_a_skill_past_its_deadline_is_cancelled() -> None:
    core, clock = make_core()
    seen.clear()
    run = asyncio.ensure_future(core.execute(call("forever", "slow"), deadline=5.0))
    await settle()
    assert seen[-1].seconds_left() == 5.0
    await clock.advance(2.0)
    assert seen[-1].seconds_left() == 3.0
    await clock.advance(3.0)
    with pytest.raises(DeadlineExceeded):
        await run
    await settle()
    assert cancelled == ["slow"] and seen[-1].is_cancelled()
    assert core.health().in_flight == 0


async def test_a_skill_calls_the_model_with_its_prompt_and_the_usage_is_the_subtasks() -> None:
    # The first answer breaks the schema: one repair call, as for the built-in skills.
    model = ScriptedModel({"topic": 3}, {"topic": "travel"}, {"topic": "trip"})
    core, _ = make_core(model)
    outcome = await core.execute(call("topic", "my flight was late"))
    assert outcome.output == {"topic": "travel/trip"}
    assert outcome.usage == Usage(300, 30, (300 * 1.0 + 30 * 2.0) / 1e6)
    assert outcome.model == "tiny-model-1"
    instructions = [p[0] for p in model.prompts]
    assert instructions == [
        "Name the topic in one word.",
        "Name the topic in one word.",
        "Again, shorter.",
    ]
    assert model.prompts[1][2] is not None  # the repair
    assert all(p[1] == {"text": "my flight was late"} for p in model.prompts)


async def test_a_model_answer_invalid_after_the_repair_fails_the_subtask() -> None:
    core, _ = make_core(ScriptedModel({"topic": 3}, {"topic": 4}))
    with pytest.raises(AgentmeshError) as raised:
        await core.execute(call("topic"))
    assert raised.value.reason == "OUTPUT_INVALID"


async def test_without_a_model_the_call_fails_with_no_model() -> None:
    core, _ = make_core()
    with pytest.raises(FailedPrecondition) as raised:
        await core.execute(call("topic"))
    assert raised.value.reason == "NO_MODEL" and "--backend" in raised.value.message


def test_the_combined_backend_reports_the_configured_one() -> None:
    model = ScriptedModel()
    combined = WithOwnSkills(PythonSkills(OWN, model), model)
    assert (combined.name, combined.model) == ("openai", "tiny-model")
    assert combined.input_price_per_mtok == 1.0 and combined.concurrency is None
    assert combined.capabilities() == frozenset(OWN) | frozenset(SKILLS)
