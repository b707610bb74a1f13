"""Skills written in Python: the `@skill` decorator and the definition it records.

A skill is a plain async function of its input (a dict, valid against its
input schema) and a `SkillContext`, returning its output (a dict, checked
against its output schema):

    from agentmesh.agents import skill

    @skill(
        name="reverse_text",
        description="Reverse a text.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        output_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    )
    async def reverse_text(input: dict, context) -> dict:
        return {"text": input["text"][::-1]}

The decorator checks the definition at once (the name, the schemas as JSON
Schema draft 2020-12, the limits) and raises `SkillDefinitionError` naming
the skill and the problem, so a bad skill stops its worker at start. The
function is returned unchanged, still callable in the module's own tests;
the definition hangs on it as `__agentmesh_skill__`, where
`agentmesh worker --skills-module` finds it (`skillload.py`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agentmesh.server.skills import Skill
from agentmesh.tiers import DECLARED, Difficulty, Tier

if TYPE_CHECKING:
    from agentmesh.agents.skillcontext import SkillContext

ATTRIBUTE = "__agentmesh_skill__"
"""The attribute of a decorated function that holds its `SkillDefinition`."""

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A skill's name: lower_snake_case, at most 64 characters (a capability name)."""

DEFAULT_MAX_INPUT_BYTES = 65_536
"""The input budget of a skill that declares none: 64 KiB of JSON, as the built-in skills."""

SkillFunction = Callable[[dict[str, Any], "SkillContext"], Awaitable[dict[str, Any]]]
"""What a skill is: an async function of its input and its context, giving its output."""

F = TypeVar("F", bound=Callable[..., Any])

_DIFFICULTIES = {"simple": Difficulty.SIMPLE, "nuanced": Difficulty.NUANCED}

# The skills decorated while a module is being loaded (`skillload.py` sets and reads it).
collecting: list[SkillDefinition] | None = None


class SkillDefinitionError(ValueError):
    """A skill defined wrongly: the message names the skill and what is wrong."""


@dataclass(frozen=True)
class SkillDefinition:
    """A skill written in Python: its contract, its function, and how it is routed."""

    skill: Skill
    """The contract: name, description, schemas, input budget, difficulty; what the worker
    registers."""
    function: SkillFunction
    tier: Tier = Tier.UNSPECIFIED
    """The model tier its work needs; UNSPECIFIED leaves the worker's tier as its backend's."""
    origin: str = ""
    """Where it was defined, for messages, when not its function (a declared skill's file)."""

    @property
    def name(self) -> str:
        return self.skill.name

    @property
    def difficulty(self) -> Difficulty:
        """The difficulty of a step using it that sets none (UNSPECIFIED counts as simple)."""
        return self.skill.difficulty

    @property
    def where(self) -> str:
        """Where it was defined, for messages: its origin, else its function's module and name."""
        return self.origin or f"{self.function.__module__}.{self.function.__qualname__}"


def skill(
    *,
    name: str,
    description: str,
    input_schema: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    difficulty: str | Difficulty = Difficulty.UNSPECIFIED,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    tier: str | Tier = Tier.UNSPECIFIED,
    instructions: str = "",
) -> Callable[[F], F]:
    """Declare an async function `(input, context) -> output` as a skill (see the module).

    `difficulty` is "simple" or "nuanced"; `tier` is "builtin", "small" or
    "large" (the worker declares the highest of its skills' tiers unless
    AGENTMESH_TIER says otherwise); `max_input_bytes` bounds the input as
    JSON; `instructions` is the system prompt `context.model.generate` uses
    by default. Raises SkillDefinitionError on a bad definition.
    """

    def decorate(function: F) -> F:
        where = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
        definition = make_definition(
            function,
            where=where,
            name=name,
            description=description,
            input_schema=input_schema,
            output_schema=output_schema,
            difficulty=difficulty,
            max_input_bytes=max_input_bytes,
            tier=tier,
            instructions=instructions,
        )
        setattr(function, ATTRIBUTE, definition)
        if collecting is not None:
            collecting.append(definition)
        return function

    return decorate


def make_definition(
    function: Callable[..., Any],
    *,
    where: str,
    name: str,
    description: str,
    input_schema: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    difficulty: str | Difficulty = Difficulty.UNSPECIFIED,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    tier: str | Tier = Tier.UNSPECIFIED,
    instructions: str = "",
    temperature: float | None = None,
    origin: str = "",
) -> SkillDefinition:
    """The checked definition of a skill run by `function` (what `@skill` records);
    `where` names it in errors. Raises SkillDefinitionError on a bad definition."""

    def fail(problem: str) -> SkillDefinitionError:
        return SkillDefinitionError(f"skill {name!r} ({where}): {problem}")

    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail("the name must be lower_snake_case, a letter first, at most 64 characters")
    if not inspect.iscoroutinefunction(function):
        raise fail("a skill must be an async function: `async def f(input, context)`")
    if not isinstance(description, str) or not description.strip():
        raise fail("the description must be a sentence saying what the skill does")
    if not isinstance(instructions, str):
        raise fail(f"instructions must be a string, not {type(instructions).__name__}")
    for field, schema in (("input_schema", input_schema), ("output_schema", output_schema)):
        problem = schema_problem(schema)
        if problem:
            raise fail(f"{field} {problem}")
    if isinstance(max_input_bytes, bool) or not isinstance(max_input_bytes, int):
        raise fail(f"max_input_bytes must be an integer, not {max_input_bytes!r}")
    if max_input_bytes <= 0:
        raise fail(f"max_input_bytes must be positive, not {max_input_bytes}")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise fail(f"temperature must be a number from 0 to 2, not {temperature!r}")
    return SkillDefinition(
        skill=Skill(
            name=name,
            description=description.strip(),
            input_schema=dict(input_schema),
            output_schema=dict(output_schema),
            instructions=instructions.strip() or description.strip(),
            max_input_bytes=max_input_bytes,
            difficulty=_difficulty(difficulty, fail),
            temperature=None if temperature is None else float(temperature),
        ),
        function=function,
        tier=_tier(tier, fail),
        origin=origin,
    )


def schema_problem(schema: object) -> str:
    """Why `schema` cannot be a skill's schema (an object's JSON Schema); "" if it can."""
    if not isinstance(schema, Mapping):
        return f"must be a JSON Schema object (a dict), not {type(schema).__name__}"
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as error:
        at = "/".join(map(str, error.absolute_path)) or "the top"
        return f"is not a valid JSON Schema (draft 2020-12): {error.message} (at {at})"
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        return f'must describe an object ("type": "object"), not {kind!r}'
    return ""


def definition_of(value: object) -> SkillDefinition | None:
    """The skill a decorated function defines; None for anything else."""
    found = getattr(value, ATTRIBUTE, None) if callable(value) else None
    return found if isinstance(found, SkillDefinition) else None


def _difficulty(value: str | Difficulty, fail: Callable[[str], Exception]) -> Difficulty:
    if isinstance(value, Difficulty):
        return value
    if value in _DIFFICULTIES:
        return _DIFFICULTIES[value]
    raise fail(f"difficulty must be one of {', '.join(_DIFFICULTIES)}, not {value!r}")


def _tier(value: str | Tier, fail: Callable[[str], Exception]) -> Tier:
    if isinstance(value, Tier):
        return value
    if value in DECLARED:
        return DECLARED[value]
    raise fail(f"tier must be one of {', '.join(DECLARED)}, not {value!r}")
