"""Plans: a DAG of steps, how they are checked, and how their inputs resolve.

A plan is plain data here; `agentmesh.scheduler.convert` translates it
from and to protobuf. References are dotted paths: `request[.field...]` into
the request's input, `steps.<id>[.field...]` into a step's output; a list
element is addressed by its index (`steps.split.chunks.0`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler.queues import NORMAL
from agentmesh.server.refs import MISSING, resolve_ref
from agentmesh.tiers import Difficulty

STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
REFERENCE = re.compile(r"^(request|steps\.[a-z][a-z0-9_]{0,63})(\.[A-Za-z0-9_-]+)*$")

EQUALS, NOT_EQUALS = "equals", "not_equals"


@dataclass(frozen=True)
class Binding:
    """Where one input field comes from: references, then a literal default."""

    refs: tuple[str, ...] = ()
    collect: bool = False
    value: Any = None


@dataclass(frozen=True)
class Condition:
    """Run a step only when the referenced value compares as stated."""

    ref: str
    operator: str
    value: Any


@dataclass(frozen=True)
class Step:
    id: str
    capability: str
    inputs: Mapping[str, Binding] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    difficulty: Difficulty = Difficulty.UNSPECIFIED
    optional: bool = False
    when: Condition | None = None


def step_priority(step: int, request: int) -> int:
    """The priority class a step runs at: its request's, or its own when that is higher.

    An unspecified request priority is NORMAL; a step cannot lower its request's.
    """
    return max(step, request or NORMAL)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    answer: Mapping[str, Binding] = field(default_factory=dict)
    workflow: str = ""

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


def validate_plan(plan: Plan, capabilities: frozenset[str], max_steps: int) -> None:
    """Raise InvalidArgument, naming every problem, unless the plan can run.

    `capabilities` are those the mesh knows of: a step naming any other is
    an error in the plan, not a missing worker.
    """
    violations: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        violations.append(FieldViolation(f"plan.{path}", description))

    if not plan.steps:
        bad("steps", "a plan needs at least one step")
    if len(plan.steps) > max_steps:
        # Nothing more is checked: a huge plan must cost nothing to refuse.
        raise too_many_steps(len(plan.steps), max_steps)
    ids = [s.id for s in plan.steps]
    counts = Counter(ids)
    known = set(ids)
    for i, step in enumerate(plan.steps):
        where = f"steps[{i}]"
        if not STEP_ID.match(step.id):
            bad(f"{where}.id", f"{step.id!r} is not a step id (lower_snake_case, ≤ 64 chars)")
        elif counts[step.id] > 1:
            bad(f"{where}.id", f"step id {step.id!r} is used more than once")
        if step.capability not in capabilities:
            bad(
                f"{where}.capability",
                f"unknown capability {step.capability!r}; known: {', '.join(sorted(capabilities))}",
            )
        for j, dep in enumerate(step.depends_on):
            if dep not in known:
                bad(f"{where}.depends_on[{j}]", f"no step {dep!r} in the plan")
            elif dep == step.id:
                bad(f"{where}.depends_on[{j}]", f"step {step.id!r} depends on itself")
        reachable = set(step.depends_on)
        for name, binding in step.inputs.items():
            for j, ref in enumerate(binding.refs):
                _check_ref(ref, reachable, f"{where}.inputs[{name}].refs[{j}]", bad)
        if step.when is not None:
            _check_ref(step.when.ref, reachable, f"{where}.when.ref", bad)
            if step.when.operator not in (EQUALS, NOT_EQUALS):
                bad(f"{where}.when.operator", "the operator must be EQUALS or NOT_EQUALS")
    for name, binding in plan.answer.items():
        for j, ref in enumerate(binding.refs):
            _check_ref(ref, known, f"answer[{name}].refs[{j}]", bad)
    if not violations:
        cycle = find_cycle(plan.steps)
        if cycle:
            bad("steps", f"the steps form a cycle: {' -> '.join(cycle)}")
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        raise InvalidArgument(f"invalid plan: {summary}", violations, reason="INVALID_PLAN")


def too_many_steps(steps: int, max_steps: int) -> InvalidArgument:
    return InvalidArgument(
        f"invalid plan: {steps} steps is more than the limit of {max_steps}",
        [FieldViolation("plan.steps", f"at most {max_steps} steps")],
        reason="INVALID_PLAN",
    )


def _check_ref(ref: str, steps: set[str], path: str, bad: Any) -> None:
    if not REFERENCE.match(ref):
        bad(path, f"{ref!r} is not a reference (request[.field] or steps.<id>[.field])")
        return
    if ref.startswith("steps."):
        step_id = ref.split(".")[1]
        if step_id not in steps:
            bad(path, f"{ref!r} refers to step {step_id!r}, which is not among its dependencies")


def find_cycle(steps: Sequence[Step]) -> list[str]:
    """One dependency cycle as a list of step ids (first repeated last), or []."""
    graph = {s.id: s.depends_on for s in steps}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for step in steps:
        if step.id not in state:
            found = visit(step.id)
            if found:
                return found
    return []


def resolve_bindings(
    bindings: Mapping[str, Binding], request: Mapping[str, Any], outputs: Mapping[str, Any]
) -> dict[str, Any]:
    """An input object from bindings; a field that resolves to nothing is left out."""
    resolved: dict[str, Any] = {}
    for name, binding in bindings.items():
        if binding.collect:
            resolved[name] = [
                v
                for ref in binding.refs
                if (v := resolve_ref(ref, request, outputs)) is not MISSING
            ]
            continue
        for ref in binding.refs:  # the first reference that resolves
            value = resolve_ref(ref, request, outputs)
            if value is not MISSING:
                resolved[name] = value
                break
        else:
            if binding.value is not None:
                resolved[name] = binding.value
    return resolved


def condition_holds(
    condition: Condition, request: Mapping[str, Any], outputs: Mapping[str, Any]
) -> bool:
    """Whether a step's condition holds; a reference that resolves to nothing fails it."""
    value = resolve_ref(condition.ref, request, outputs)
    if value is MISSING:
        return False
    equal = value == condition.value
    return equal if condition.operator == EQUALS else not equal


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (for the store): what `dataclasses.asdict(plan)` gives,
    made by hand, as asdict's recursive deep copy is a visible part of every request's cost."""

    def bindings(of: Mapping[str, Binding]) -> dict[str, Any]:
        return {
            k: {"refs": list(b.refs), "collect": b.collect, "value": b.value} for k, b in of.items()
        }

    return {
        "steps": [
            {
                "id": s.id,
                "capability": s.capability,
                "inputs": bindings(s.inputs),
                "depends_on": list(s.depends_on),
                "priority": s.priority,
                "difficulty": s.difficulty,
                "optional": s.optional,
                "when": None
                if s.when is None
                else {"ref": s.when.ref, "operator": s.when.operator, "value": s.when.value},
            }
            for s in plan.steps
        ],
        "answer": bindings(plan.answer),
        "workflow": plan.workflow,
    }


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """The plan `plan_to_dict` made."""

    def binding(raw: Mapping[str, Any]) -> Binding:
        return Binding(refs=tuple(raw["refs"]), collect=raw["collect"], value=raw["value"])

    return Plan(
        steps=tuple(
            Step(
                id=s["id"],
                capability=s["capability"],
                inputs={k: binding(b) for k, b in s["inputs"].items()},
                depends_on=tuple(s["depends_on"]),
                priority=s["priority"],
                difficulty=Difficulty(s["difficulty"]),
                optional=s["optional"],
                when=Condition(**s["when"]) if s["when"] else None,
            )
            for s in data["steps"]
        ),
        answer={k: binding(b) for k, b in data["answer"].items()},
        workflow=data["workflow"],
    )
