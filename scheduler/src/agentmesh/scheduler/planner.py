"""The LLM planner's side in the scheduler: what it is asked, and how its answer becomes a plan.

A request that names no workflow but a goal is planned by a worker offering
the `plan` skill. It is told the goal, the fields of the request's input,
and the capabilities the mesh offers now with the descriptions their workers
registered (a worker's own skill as much as a built-in one); its answer is
converted here and then checked like any client-supplied plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentmesh.scheduler.plans import Binding, Plan, Step
from agentmesh.scheduler.tiers import NUANCED, SIMPLE
from agentmesh.server.skills import Skill

#: The capability that makes plans; a plan never uses it itself.
PLAN = "plan"


def planner_input(
    goal: str, data: Mapping[str, Any], skills: Mapping[str, Skill]
) -> dict[str, Any]:
    """The `plan` skill's input for a goal: the live skills by name, with the description
    each registered (a worker's own skill as much as a built-in one)."""
    return {
        "goal": goal,
        "input_fields": sorted(data),
        "capabilities": [
            {"name": name, "description": skills[name].description}
            for name in sorted(set(skills) - {PLAN})
        ],
    }


def plan_from_output(output: Mapping[str, Any]) -> Plan:
    """The plan a planner's (schema-valid) output describes; references are kept as given."""
    steps = tuple(
        Step(
            id=raw["id"],
            capability=raw["capability"],
            inputs={name: Binding(refs=(ref,)) for name, ref in raw["inputs"].items()},
            depends_on=tuple(raw["depends_on"]),
            difficulty=NUANCED if raw.get("difficulty") == "nuanced" else SIMPLE,
        )
        for raw in output["steps"]
    )
    answer = {name: Binding(refs=(ref,)) for name, ref in output.get("answer", {}).items()}
    return Plan(steps=steps, answer=answer, workflow="")
