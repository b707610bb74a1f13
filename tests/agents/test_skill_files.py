"""Skills declared for a model in TOML (`--skills-dir`): loading, every refusal naming the
file and the problem, the refusal on a worker without a model, and a run through the model
path (structured output, repair, usage, the skill's temperature)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agentmesh.agents.backends import make_backend
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.llm import ModelBackend, ModelConfig, Repair, Reply
from agentmesh.agents.prices import Price
from agentmesh.agents.pyskills import PythonSkills, WithOwnSkills
from agentmesh.agents.runtime import Worker
from agentmesh.agents.skillfiles import SkillFileError, load_skill_file, load_skills_dirs
from agentmesh.agents.subtask import Subtask
from agentmesh.errors import AgentmeshError
from agentmesh.server.skills import SKILLS, Skill
from agentmesh.tiers import Difficulty, Tier
from agentmesh.usage import Usage
from tests.support.fakes import SimClock
from tests.support.mesh import ROOT

EXAMPLE = ROOT / "examples" / "agents" / "returns" / "skills"

GOOD = """
name = "topic"
description = "Name a text's topic."
instructions = "Name the topic in one word."
difficulty = "simple"
temperature = 0.4

[input_schema]
type = "object"
required = ["text"]
properties.text = { type = "string" }

[output_schema]
type = "object"
required = ["topic"]
additionalProperties = false
properties.topic = { type = "string" }
"""


def skill_file(folder: Path, body: str = GOOD, filename: str = "topic.toml") -> Path:
    path = folder / filename
    path.write_text(textwrap.dedent(body))
    return path


def refusal(folder: Path, reserved: tuple[str, ...] = ()) -> str:
    with pytest.raises(SkillFileError) as raised:
        load_skills_dirs([str(folder)], reserved={*SKILLS, *reserved})
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_a_file_declares_a_skill_with_its_contract(tmp_path: Path) -> None:
    path = skill_file(tmp_path)
    loaded = load_skills_dirs([str(tmp_path)], reserved=SKILLS)
    definition = loaded["topic"]
    assert definition.skill.instructions == "Name the topic in one word."
    assert definition.skill.output_schema["required"] == ["topic"]
    assert definition.skill.temperature == 0.4
    assert definition.difficulty == Difficulty.SIMPLE
    assert definition.tier == Tier.SMALL  # it needs a model
    assert definition.where == str(path)


def test_a_schema_may_be_a_string_of_json(tmp_path: Path) -> None:
    body = GOOD.split("[input_schema]")[0] + textwrap.dedent(
        """
        input_schema = '{"type": "object", "properties": {"text": {"type": "string"}}}'
        output_schema = '{"type": "object", "properties": {"topic": {"type": "string"}}}'
        """
    )
    definition = load_skill_file(skill_file(tmp_path, body))
    assert definition.skill.input_schema["properties"] == {"text": {"type": "string"}}


def test_the_examples_declared_skill_loads() -> None:
    loaded = load_skills_dirs([str(EXAMPLE)], reserved=SKILLS)
    assert set(loaded) == {"customer_reply"}
    assert loaded["customer_reply"].difficulty == Difficulty.NUANCED


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('name = "topic"\ndescription = ', "invalid TOML"),
        (GOOD.replace('instructions = "Name the topic in one word."', ""), "instructions"),
        (GOOD.replace("[output_schema]", "[output]"), "missing field(s): output_schema"),
        (GOOD.replace("temperature = 0.4", "temprature = 0.4"), "unknown field(s): temprature"),
        (GOOD.replace('type = "object"\nrequired = ["text"]', 'type = "thing"'), "input_schema"),
        (GOOD.replace('required = ["topic"]', 'required = "topic"'), "output_schema"),
        (GOOD.replace('difficulty = "simple"', 'difficulty = "hard"'), "difficulty must be"),
        (GOOD.replace('name = "topic"', 'name = "Topic Finder"'), "lower_snake_case"),
        (GOOD.replace("temperature = 0.4", "temperature = 7"), "temperature must be"),
        (GOOD.replace("temperature = 0.4", "max_input_bytes = -1"), "max_input_bytes"),
        (GOOD.replace('description = "Name a text\'s topic."', 'description = ""'), "description"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, body: str, problem: str
) -> None:
    path = skill_file(tmp_path, body)
    message = refusal(tmp_path)
    assert str(path) in message
    assert problem in message


def test_a_name_taken_by_a_built_in_or_python_skill_or_twice_is_refused(tmp_path: Path) -> None:
    skill_file(tmp_path, GOOD.replace('name = "topic"', 'name = "sentiment"'))
    assert "built-in" in refusal(tmp_path)
    skill_file(tmp_path)  # topic.toml again, now named "topic"
    assert "built-in" in refusal(tmp_path, reserved=("topic",))
    skill_file(tmp_path, filename="again.toml")
    assert "declared twice" in refusal(tmp_path)


def test_a_missing_or_empty_folder_is_refused(tmp_path: Path) -> None:
    assert "no such folder" in refusal(tmp_path / "nowhere")
    assert "no *.toml file" in refusal(tmp_path)


def test_the_setting_reads_a_comma_separated_list() -> None:
    config = WorkerConfig.from_env({"AGENTMESH_SKILLS_DIRS": "a, b"})
    assert config.skills_dirs == ("a", "b")


def test_a_worker_without_a_model_refuses_declared_skills(tmp_path: Path) -> None:
    skill_file(tmp_path)
    config = WorkerConfig(skills_dirs=(str(tmp_path),))
    with pytest.raises(SkillFileError) as raised:
        Worker(config, make_backend("builtin", {}))
    assert "--backend openai|anthropic|local" in str(raised.value)
    assert "topic.toml" in str(raised.value)


class ScriptedModel(ModelBackend):
    """A model backend whose answers come from a script; records what it was asked."""

    name = "openai"

    def __init__(self, *answers: Any) -> None:
        super().__init__(ModelConfig("openai", "tiny-model"), Price(1.0, 2.0), "key")
        self.answers = list(answers)
        self.prompts: list[tuple[Skill, Mapping[str, Any], Repair | None]] = []

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        self.prompts.append((skill, data, repair))
        return Reply(self.answers.pop(0), "", 100, 10, "tiny-model-1")

    def map_error(self, error: Exception) -> AgentmeshError | None:
        return None


async def test_a_declared_skill_runs_as_one_structured_model_call(tmp_path: Path) -> None:
    skill_file(tmp_path)
    own = load_skills_dirs([str(tmp_path)], reserved=SKILLS)
    # The first answer breaks the schema: one repair, as for every model call.
    model = ScriptedModel({"topic": 3}, {"topic": "travel"})
    core = WorkerCore(
        WithOwnSkills(PythonSkills(own, model), model),
        worker_id="w1",
        skills=frozenset(own),
        catalogue={**SKILLS, **{n: d.skill for n, d in own.items()}},
        clock=SimClock(),
    )
    outcome = await core.execute(Subtask("r1", "s1", "topic", {"text": "my flight was late"}))
    assert outcome.output == {"topic": "travel"}
    assert outcome.usage == Usage(200, 20, (200 * 1.0 + 20 * 2.0) / 1e6)
    assert [p[0].instructions for p in model.prompts] == ["Name the topic in one word."] * 2
    assert model.prompts[1][2] is not None
    assert model.config.temperature_for(model.prompts[0][0]) == 0.4


def test_a_skills_temperature_is_sent_unless_one_is_set_for_every_skill(tmp_path: Path) -> None:
    skill = load_skill_file(skill_file(tmp_path)).skill
    assert ModelConfig("openai", "m").temperature_for(skill) == 0.4
    assert ModelConfig("openai", "m", temperature=0.0).temperature_for(skill) == 0.0
    assert ModelConfig("anthropic", "m").body(skill) == {"temperature": 0.4}
