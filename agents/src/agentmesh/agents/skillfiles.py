"""Skills declared for a model, no code: `agentmesh worker --skills-dir DIR`.

Every `*.toml` file in DIR declares one skill that the worker's model runs:

    name = "customer_reply"
    description = "Write the reply to a customer about their return."
    instructions = "You write short, friendly replies to a shop's customers..."
    difficulty = "nuanced"          # or "simple"
    max_input_bytes = 8192          # optional (default 64 KiB)
    temperature = 0.3               # optional, for backends that take one
    tier = "small"                  # optional: builtin, small or large

    [input_schema]                  # JSON Schema (draft 2020-12) of the input
    type = "object"
    required = ["order"]
    ...
    [output_schema]                 # and of the output: the model answers in it
    ...

A schema may also be a string holding JSON. The skill becomes a Python skill
(`skilldef.SkillDefinition`) whose function is one `context.model.generate`
call with the skill's instructions and output schema, so it runs exactly as a
Python skill calling the model does: structured output, one repair, the
model backend's errors, usage and cost. A file that is not TOML, lacks a
field, has an unknown one, or whose schema is invalid is refused with
`SkillFileError` (a ValueError: one line naming the file and the problem).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from agentmesh.agents.backend import Backend
from agentmesh.agents.skillcontext import SkillContext
from agentmesh.agents.skilldef import (
    DEFAULT_MAX_INPUT_BYTES,
    SkillDefinition,
    SkillDefinitionError,
    make_definition,
)

REQUIRED = ("name", "description", "instructions", "difficulty", "input_schema", "output_schema")
"""The fields every declared skill has."""

OPTIONAL = ("max_input_bytes", "temperature", "tier")
"""The fields a declared skill may have."""


class SkillFileError(ValueError):
    """A skill file or folder the worker cannot use: the message names it and the problem."""


def load_skills_dirs(
    dirs: Iterable[str], reserved: Collection[str] = ()
) -> dict[str, SkillDefinition]:
    """The skills declared in every `*.toml` of the folders, by name; `reserved` are names
    taken (the built-in skills and the worker's Python skills)."""
    found: dict[str, SkillDefinition] = {}
    for folder in dirs:
        path = Path(folder)
        if not path.is_dir():
            raise SkillFileError(f"skills dir {folder}: no such folder")
        files = sorted(path.glob("*.toml"))
        if not files:
            raise SkillFileError(f"skills dir {folder}: no *.toml file declares a skill")
        for file in files:
            definition = load_skill_file(file)
            name = definition.name
            if name in reserved:
                raise SkillFileError(
                    f"skill file {file}: skill {name!r} has the name of a built-in skill or "
                    "of one of the worker's Python skills; give it another name"
                )
            if name in found:
                raise SkillFileError(
                    f"skill file {file}: skill {name!r} is declared twice, also by "
                    f"{found[name].where}"
                )
            found[name] = definition
    return found


def load_skill_file(file: Path) -> SkillDefinition:
    """The skill one file declares; SkillFileError names the file and what is wrong."""

    def fail(problem: str) -> SkillFileError:
        return SkillFileError(f"skill file {file}: {problem}")

    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise fail(f"invalid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read it: {error}") from None
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise fail(f"missing field(s): {', '.join(missing)} (a skill needs {', '.join(REQUIRED)})")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise fail(
            f"unknown field(s): {', '.join(unknown)} (known: {', '.join(REQUIRED + OPTIONAL)})"
        )
    for key in ("name", "description", "instructions", "difficulty"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise fail(f"{key} must be a non-empty string")
    schemas = {key: _schema(data[key], key, fail) for key in ("input_schema", "output_schema")}
    try:
        return make_definition(
            _model_call,
            where=str(file),
            name=data["name"],
            description=data["description"],
            input_schema=schemas["input_schema"],
            output_schema=schemas["output_schema"],
            difficulty=data["difficulty"],
            max_input_bytes=data.get("max_input_bytes", DEFAULT_MAX_INPUT_BYTES),
            tier=data.get("tier", "small"),
            instructions=data["instructions"],
            temperature=data.get("temperature"),
            origin=str(file),
        )
    except SkillDefinitionError as error:
        # Its message names the skill and the file already.
        raise SkillFileError(str(error)) from None


async def _model_call(input: dict[str, Any], context: SkillContext) -> dict[str, Any]:
    """A declared skill's whole work: the model's answer to the input, with the skill's
    instructions and in its output schema (`SkillModel.generate`)."""
    return await context.model.generate(input)


def _schema(raw: object, key: str, fail: Any) -> Mapping[str, Any]:
    """A schema given as a TOML table, or as a string of JSON."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise fail(f"{key} is a string but not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise fail(f"{key} must be a table (or a string of JSON), not {type(raw).__name__}")
    return raw


def check_model_backend(definitions: Iterable[SkillDefinition], backend: Backend) -> None:
    """Refuse declared skills on a worker without a model: they would only ever fail."""
    from agentmesh.agents.llm import ModelBackend

    if isinstance(backend, ModelBackend):
        return
    first = next(iter(definitions), None)
    if first is not None:
        raise SkillFileError(
            f"skill file {first.where}: skill {first.name!r} is declared for a model, and this "
            f"worker's backend ({backend.name}) has none: start it with --backend openai|"
            "anthropic|local"
        )
