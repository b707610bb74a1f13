"""Skill contracts as workers declare them at registration, checked and completed.

A worker sends a spec (`Skill`) for each capability it offers, or none.
Before the registry takes a worker, every declared spec is checked (its
name is one of the worker's capabilities and is given once, its schemas are
JSON Schemas, its input budget is not negative), and each capability left
without one is given the built-in catalogue's spec when it is a built-in
skill's name, or an open one (any object in and out) when it is not. The
registry then holds one complete contract per capability of the worker, and
refuses a second contract for a capability (see `Registry.register`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.server.skills import SKILLS, Skill, open_skill, schema_problems


def complete(spec: WorkerSpec) -> WorkerSpec:
    """`spec` with one contract per capability, sorted by name; InvalidArgument, naming
    each bad field (`skills[i]...`), for a declared spec that cannot be taken."""
    violations: list[FieldViolation] = []
    declared: dict[str, Skill] = {}
    for i, skill in enumerate(spec.skills):
        violations += _problems(skill, f"skills[{i}]", spec.capabilities, declared)
        declared.setdefault(skill.name, skill)
    if violations:
        raise InvalidArgument(
            "invalid skill specs: "
            + "; ".join(f"{v.field}: {v.description}" for v in violations[:5]),
            violations,
            reason="INVALID_SKILL_SPEC",
        )
    skills = tuple(
        declared.get(name) or SKILLS.get(name) or open_skill(name)
        for name in sorted(spec.capabilities)
    )
    return replace(spec, skills=skills)


def _problems(
    skill: Skill, where: str, capabilities: frozenset[str], seen: Mapping[str, Skill]
) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    if skill.name not in capabilities:
        found.append(
            FieldViolation(f"{where}.name", f"{skill.name!r} is not among worker.capabilities")
        )
    elif skill.name in seen:
        found.append(FieldViolation(f"{where}.name", f"a second spec for {skill.name!r}"))
    for part, schema in (
        ("input_schema", skill.input_schema),
        ("output_schema", skill.output_schema),
    ):
        found += [
            FieldViolation(f"{where}.{part}", f"not a JSON Schema (draft 2020-12): {problem}")
            for problem in schema_problems(schema)[:3]
        ]
    if skill.max_input_bytes < 0:
        found.append(FieldViolation(f"{where}.max_input_bytes", "0 (no limit of its own) or more"))
    return found
