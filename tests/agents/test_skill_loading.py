"""Loading a worker's own skills: `--skills-module` as a file or a dotted module, and every
way a module is refused (bad schema, import error, no skill, a name twice or built-in)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentmesh.agents import skill
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.runtime import offered_skills, worker_tier
from agentmesh.agents.skilldef import SkillDefinitionError, definition_of
from agentmesh.agents.skillload import SkillsModuleError, load_skills_modules
from agentmesh.server.skills import SKILLS
from agentmesh.tiers import Difficulty, Tier

REVERSE = """
from agentmesh.agents import skill

@skill(
    name="{name}",
    description="Reverse a text.",
    input_schema={input_schema},
    output_schema={{"type": "object", "properties": {{"text": {{"type": "string"}}}},
                   "required": ["text"]}},
)
async def {function}(input: dict, context) -> dict:
    return {{"text": input["text"][::-1]}}
"""
TEXT_IN = '{"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}'


def skills_file(
    folder: Path,
    filename: str = "reverse.py",
    *,
    name: str = "reverse_text",
    function: str = "reverse_text",
    input_schema: str = TEXT_IN,
    extra: str = "",
) -> Path:
    path = folder / filename
    body = REVERSE.format(name=name, function=function, input_schema=input_schema)
    path.write_text(textwrap.dedent(extra) + body)
    return path


def refusal(*sources: str) -> str:
    with pytest.raises(SkillsModuleError) as raised:
        load_skills_modules(sources, reserved=SKILLS)
    return str(raised.value)


def test_a_file_path_loads_every_skill_it_defines(tmp_path: Path) -> None:
    path = skills_file(tmp_path)
    loaded = load_skills_modules([str(path)], reserved=SKILLS)
    assert list(loaded) == ["reverse_text"]
    definition = loaded["reverse_text"]
    assert definition.skill.description == "Reverse a text."
    assert definition.skill.input_schema["required"] == ["text"]
    assert definition.skill.max_input_bytes == 65_536
    assert definition.difficulty is Difficulty.UNSPECIFIED and definition.tier is Tier.UNSPECIFIED


def test_a_dotted_module_loads_and_a_file_may_import_its_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "teamskills"
    package.mkdir()
    (package / "__init__.py").write_text("")
    skills_file(package, "text.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(load_skills_modules(["teamskills.text"])) == ["reverse_text"]
    # A file next to a helper module imports it, as `python FILE` would.
    (tmp_path / "helper_for_skills.py").write_text("SUFFIX = '!'\n")
    path = skills_file(tmp_path, "shout.py", name="shout", extra="import helper_for_skills\n")
    assert list(load_skills_modules([str(path)])) == ["shout"]


def test_optional_arguments_are_recorded() -> None:
    @skill(
        name="weigh",
        description="Weigh a text.",
        input_schema={"type": "object"},
        output_schema={"type": "object"},
        difficulty="nuanced",
        max_input_bytes=1024,
        tier="large",
    )
    async def weigh(input: dict, context: object) -> dict:
        return {}

    definition = definition_of(weigh)
    assert definition is not None
    assert definition.difficulty is Difficulty.NUANCED and definition.tier is Tier.LARGE
    assert definition.skill.max_input_bytes == 1024
    assert weigh.__name__ == "weigh"  # the function itself, still callable


def test_a_bad_schema_stops_the_load_naming_the_module_the_skill_and_the_problem(
    tmp_path: Path,
) -> None:
    path = skills_file(tmp_path, input_schema='{"type": "objekt"}')
    message = refusal(str(path))
    assert str(path) in message and "'reverse_text'" in message
    assert "input_schema is not a valid JSON Schema" in message and "objekt" in message


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": "Reverse Text"}, "lower_snake_case"),
        ({"description": " "}, "description"),
        ({"output_schema": {"type": "string"}}, "must describe an object"),
        ({"output_schema": ["type"]}, "must be a JSON Schema object"),
        ({"max_input_bytes": 0}, "max_input_bytes must be positive"),
        ({"difficulty": "hard"}, "difficulty must be one of simple, nuanced"),
        ({"tier": "huge"}, "tier must be one of builtin, small, large"),
    ],
)
def test_the_decorator_refuses_a_bad_definition(kwargs: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {
        "name": "reverse_text",
        "description": "Reverse a text.",
        "input_schema": {"type": "object"},
        "output_schema": {"type": "object"},
    } | kwargs
    with pytest.raises(SkillDefinitionError, match=problem):

        @skill(**arguments)  # type: ignore[arg-type]
        async def reverse_text(input: dict, context: object) -> dict:
            return {}


def test_a_plain_function_is_refused() -> None:
    with pytest.raises(SkillDefinitionError, match="must be an async function"):

        @skill(name="sync", description="Not async.", input_schema={}, output_schema={})
        def sync(input: dict, context: object) -> dict:
            return {}


def test_a_module_that_cannot_be_imported_is_named_with_the_error_and_its_line(
    tmp_path: Path,
) -> None:
    path = skills_file(tmp_path, extra="import no_such_package_for_skills\n")
    message = refusal(str(path))
    assert message.startswith(f"cannot import skills module {path}")
    assert "ModuleNotFoundError" in message and "no_such_package_for_skills" in message
    assert "(line 1)" in message
    broken = tmp_path / "broken.py"
    broken.write_text("async def f(:\n")
    assert "SyntaxError" in refusal(str(broken)) and "broken.py" in refusal(str(broken))
    assert "no such file" in refusal(str(tmp_path / "missing.py"))
    assert "No module named 'no_such_skills_module'" in refusal("no_such_skills_module")


def test_a_module_without_skills_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("async def helper(input, context):\n    return {}\n")
    assert "defines no skill" in refusal(str(empty))


def test_a_name_defined_twice_is_refused_in_one_module_and_across_modules(
    tmp_path: Path,
) -> None:
    twice = skills_file(tmp_path, "twice.py")
    twice.write_text(
        twice.read_text()
        + REVERSE.format(name="reverse_text", function="again", input_schema=TEXT_IN)
    )
    message = refusal(str(twice))
    assert "'reverse_text' is defined twice" in message and str(twice) in message
    first = skills_file(tmp_path, "first.py")
    second = skills_file(tmp_path, "second.py")
    message = refusal(str(first), str(second))
    assert "defined twice" in message and str(second) in message and str(first) in message


def test_the_name_of_a_builtin_skill_is_refused(tmp_path: Path) -> None:
    path = skills_file(tmp_path, name="sentiment")
    message = refusal(str(path))
    assert "'sentiment'" in message and "built-in" in message and str(path) in message


def test_what_a_worker_offers_and_declares() -> None:
    own = load_skills_modules([])
    assert offered_skills((), own) is None  # no modules: all the backend runs, as before
    assert offered_skills(("sentiment",), own) == {"sentiment"}

    @skill(name="own", description="Own.", input_schema={}, output_schema={}, tier="large")
    async def mine(input: dict, context: object) -> dict:
        return {}

    definition = definition_of(mine)
    assert definition is not None
    assert offered_skills((), {"own": definition}) == {"own"}  # not the built-ins too
    assert offered_skills(("sentiment",), {"own": definition}) == {"own", "sentiment"}

    class Builtin:
        name = "builtin"
        model = ""

    assert worker_tier("", Builtin(), [Tier.LARGE]) is Tier.LARGE  # type: ignore[arg-type]
    assert worker_tier("", Builtin(), [Tier.UNSPECIFIED]) is Tier.BUILTIN  # type: ignore[arg-type]
    assert worker_tier("small", Builtin(), [Tier.LARGE]) is Tier.SMALL  # type: ignore[arg-type]


def test_the_modules_come_from_the_environment_too() -> None:
    config = WorkerConfig.from_env({"AGENTMESH_SKILLS_MODULES": "a.py, team.skills"})
    assert config.skills_modules == ("a.py", "team.skills")


def test_the_cli_imports_no_skill_machinery() -> None:
    code = (
        "import sys, agentmesh.agents.commands as c, agentmesh.agents as a\n"
        "print(sorted(m for m in ('jsonschema', 'agentmesh.agents.skilldef') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_the_example_module_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "skills" / "text_tools.py"
    loaded = load_skills_modules([str(example)], reserved=SKILLS)
    assert sorted(loaded) == ["headline", "reverse_text"]
    assert loaded["headline"].tier is Tier.SMALL
