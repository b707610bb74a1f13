"""Workflow templates: declarative plans kept as TOML files.

A template lists steps and the answer's shape; `decompose` turns it into a
concrete plan for one request's input. Bindings are written as a reference
string (`"request.text"`), a list of references tried in order
(`["steps.translate.text", "steps.reply.reply"]`), or a table
(`{refs = [...], collect = true, value = ...}`).

A step with `fan_out = {over = "request.text", chunk_chars = 1500, as = "text"}`
becomes one step per chunk of that text (`<id>_0`, `<id>_1`, ...), each with
its chunk bound to input field `as`; a `depends_on` or reference naming the
step stands for all of its instances. See docs/workflows.md.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from agentmesh.errors import FieldViolation, InvalidArgument, NotFound
from agentmesh.scheduler.plans import EQUALS, NOT_EQUALS, Binding, Condition, Plan, Step
from agentmesh.tiers import Difficulty

PRIORITIES = {"low": 1, "normal": 2, "high": 3, "critical": 4}
DIFFICULTIES = {"simple": Difficulty.SIMPLE, "nuanced": Difficulty.NUANCED}


@dataclass(frozen=True)
class FanOut:
    over: str
    chunk_chars: int
    field: str


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    required_input: tuple[str, ...]
    steps: tuple[Step, ...]
    fan_outs: Mapping[str, FanOut]
    answer: Mapping[str, Binding]


def parse_binding(raw: Any) -> Binding:
    if isinstance(raw, str):
        return Binding(refs=(raw,))
    if isinstance(raw, list):
        return Binding(refs=tuple(raw))
    if isinstance(raw, dict):
        return Binding(
            refs=tuple(raw.get("refs", ())),
            collect=bool(raw.get("collect", False)),
            value=raw.get("value"),
        )
    raise ValueError(f"a binding is a reference, a list of references or a table, not {raw!r}")


def parse_condition(raw: Mapping[str, Any]) -> Condition:
    if "equals" in raw:
        return Condition(raw["ref"], EQUALS, raw["equals"])
    return Condition(raw["ref"], NOT_EQUALS, raw["not_equals"])


def parse_workflow(data: Mapping[str, Any]) -> Workflow:
    """A workflow from a template's parsed TOML."""
    steps = []
    fan_outs = {}
    for raw in data["steps"]:
        step = Step(
            id=raw["id"],
            capability=raw["capability"],
            inputs={k: parse_binding(v) for k, v in raw.get("inputs", {}).items()},
            depends_on=tuple(raw.get("depends_on", ())),
            # Unset, a step runs at its request's priority (see plans.step_priority).
            priority=PRIORITIES[raw["priority"]] if "priority" in raw else 0,
            difficulty=DIFFICULTIES[raw.get("difficulty", "simple")],
            optional=bool(raw.get("optional", False)),
            when=parse_condition(raw["when"]) if "when" in raw else None,
        )
        steps.append(step)
        if "fan_out" in raw:
            spec = raw["fan_out"]
            fan_outs[step.id] = FanOut(spec["over"], int(spec["chunk_chars"]), spec["as"])
    return Workflow(
        name=data["name"],
        description=data.get("description", ""),
        required_input=tuple(data.get("input", {}).get("required", ())),
        steps=tuple(steps),
        fan_outs=fan_outs,
        answer={k: parse_binding(v) for k, v in data.get("answer", {}).items()},
    )


class WorkflowLibrary:
    """The workflows a scheduler knows, by name."""

    def __init__(self, workflows: Mapping[str, Workflow]) -> None:
        self._workflows = dict(workflows)

    @classmethod
    def load(cls, extra_dir: Path | None = None) -> WorkflowLibrary:
        """The built-in templates, plus (overriding them) those in extra_dir."""
        found: dict[str, Workflow] = {}
        files = [
            f for f in resources.files("agentmesh.workflows").iterdir() if f.name.endswith(".toml")
        ]
        if extra_dir is not None:
            files += sorted(extra_dir.glob("*.toml"))
        for file in files:
            workflow = parse_workflow(tomllib.loads(file.read_text(encoding="utf-8")))
            found[workflow.name] = workflow
        return cls(found)

    def names(self) -> list[str]:
        return sorted(self._workflows)

    def get(self, name: str) -> Workflow:
        try:
            return self._workflows[name]
        except KeyError:
            raise NotFound(
                f"unknown workflow {name!r}; known: {', '.join(self.names())}",
                reason="UNKNOWN_WORKFLOW",
                metadata={"workflow": name},
            ) from None

    def decompose(self, name: str, data: Mapping[str, Any], max_steps: int) -> Plan:
        """The plan a workflow makes for one request's input."""
        workflow = self.get(name)
        missing = [
            FieldViolation(f"input.{key}", f"workflow {name!r} needs a non-empty string {key!r}")
            for key in workflow.required_input
            if not isinstance(data.get(key), str) or not data[key].strip()
        ]
        if missing:
            raise InvalidArgument(
                f"input for workflow {name!r} lacks: " + ", ".join(v.field for v in missing),
                missing,
                reason="INVALID_INPUT",
            )
        fixed_steps = len(workflow.steps) - len(workflow.fan_outs)
        instances: dict[str, list[tuple[str, str]]] = {}
        for step_id, fan in workflow.fan_outs.items():
            text = data.get(fan.over.removeprefix("request."), "")
            budget = max((max_steps - fixed_steps) // max(len(workflow.fan_outs), 1), 1)
            chunks = chunk_text(str(text), fan.chunk_chars, budget)
            instances[step_id] = [(f"{step_id}_{i}", chunk) for i, chunk in enumerate(chunks)]
        steps: list[Step] = []
        for step in workflow.steps:
            expanded = Step(
                id=step.id,
                capability=step.capability,
                inputs={k: _expand_binding(b, instances) for k, b in step.inputs.items()},
                depends_on=tuple(
                    d for dep in step.depends_on for d in _instance_ids(dep, instances)
                ),
                priority=step.priority,
                difficulty=step.difficulty,
                optional=step.optional,
                when=step.when,
            )
            if step.id in instances:
                field = workflow.fan_outs[step.id].field
                steps += [
                    Step(
                        **{
                            **expanded.__dict__,
                            "id": iid,
                            "inputs": {**expanded.inputs, field: Binding(value=chunk)},
                        }
                    )
                    for iid, chunk in instances[step.id]
                ]
            else:
                steps.append(expanded)
        answer = {k: _expand_binding(b, instances) for k, b in workflow.answer.items()}
        return Plan(steps=tuple(steps), answer=answer, workflow=workflow.name)


def _instance_ids(step_id: str, instances: Mapping[str, list[tuple[str, str]]]) -> list[str]:
    if step_id in instances:
        return [iid for iid, _ in instances[step_id]]
    return [step_id]


def _expand_binding(binding: Binding, instances: Mapping[str, list[tuple[str, str]]]) -> Binding:
    refs: list[str] = []
    for ref in binding.refs:
        parts = ref.split(".")
        if parts[0] == "steps" and len(parts) > 1 and parts[1] in instances:
            refs += [
                ".".join(["steps", iid, *parts[2:]]) for iid in _instance_ids(parts[1], instances)
            ]
        else:
            refs.append(ref)
    return Binding(refs=tuple(refs), collect=binding.collect, value=binding.value)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def chunk_text(text: str, chunk_chars: int, max_chunks: int) -> list[str]:
    """Split text at paragraph (then sentence) boundaries into chunks of about chunk_chars.

    The chunk size grows when the text would otherwise need more than
    max_chunks chunks, so that a plan never outgrows its step limit.
    """
    text = text.strip()
    chunk_chars = max(chunk_chars, -(-len(text) // max_chunks))
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if len(paragraph) <= chunk_chars:
            pieces.append(paragraph)
        else:
            pieces += _SENTENCE_END.split(paragraph)
    chunks: list[str] = []
    current = ""
    for piece in filter(None, pieces):
        if current and len(current) + len(piece) + 2 > chunk_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks if len(chunks) <= max_chunks else _merge(chunks, max_chunks)


def _merge(chunks: list[str], max_chunks: int) -> list[str]:
    """Join neighbouring chunks until at most max_chunks remain."""
    while len(chunks) > max_chunks:
        i = min(range(len(chunks) - 1), key=lambda k: len(chunks[k]) + len(chunks[k + 1]))
        chunks[i : i + 2] = [f"{chunks[i]}\n\n{chunks[i + 1]}"]
    return chunks
