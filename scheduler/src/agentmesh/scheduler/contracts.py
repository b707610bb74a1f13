"""Step inputs checked against their skill's contract before any worker sees them.

A skill declares the input it takes: a JSON Schema and the largest input
it accepts (`Skill.max_input_bytes`). The scheduler checks every subtask's
bound input against both before dispatching it, so that a step a worker
would refuse costs no worker time, and one oversized input cannot occupy
workers for a whole deadline, retried on one after another. Where a plan's
required steps take their input straight from the request, the request is
refused at admission, before anything runs.

The contract is the one the capability's live workers registered
(`Registry.skill`), so a worker's own capability is checked like a built-in
one; with no live worker, a built-in skill's comes from the catalogue. Any
other capability must be live for a plan or a Dispatch to name it, so it
has a contract when its request is admitted; only a step whose workers all
left before it was dispatched goes unchecked here (it waits for a worker,
whose own check applies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler.admission import json_size
from agentmesh.scheduler.plans import Plan, Step, resolve_bindings
from agentmesh.scheduler.registry import Registry
from agentmesh.server.skills import SKILLS, Skill, input_violations

#: A capability's contract, or None when it has none (see `contract_of`).
Contracts = Callable[[str], Skill | None]


def contract_of(registry: Registry, capability: str) -> Skill | None:
    """The contract a capability's inputs are checked against: the one its live workers
    registered, else the catalogue's for a built-in skill; None for neither."""
    return registry.skill(capability) or SKILLS.get(capability)


def check_input(skill: Skill | None, data: Mapping[str, Any], field: str, what: str) -> None:
    """Refuse `data` as the input of `skill` unless the skill takes it; None takes anything.

    `field` is where the input sits in the caller's request (`input`, or
    `steps.<id>.input`) and `what` names it in the message.
    """
    if skill is None:
        return
    capability = skill.name
    size = json_size(data)
    if 0 < skill.max_input_bytes < size:
        raise InvalidArgument(
            f"{what} is {size} bytes, over the {skill.max_input_bytes} bytes of input that "
            f"{capability} takes; split it (the long_document workflow summarises long texts "
            "chunk by chunk)",
            [FieldViolation(field, f"at most {skill.max_input_bytes} bytes for {capability}")],
            reason="INPUT_TOO_LARGE",
            metadata={"capability": capability, "limit_bytes": str(skill.max_input_bytes)},
        )
    violations = input_violations(skill, data)
    if violations:
        raise InvalidArgument(
            f"{what} is not a valid input for {capability}: "
            + "; ".join(f"{f}: {d}" for f, d in violations[:5]),
            [FieldViolation(f"{field}{f.removeprefix('input')}", d) for f, d in violations],
            reason="INVALID_INPUT",
            metadata={"capability": capability},
        )


def checked_at_admission(step: Step) -> bool:
    """Whether a step's input is checked when its request is admitted: a required,
    unconditional step whose input comes from the request alone. Others are checked
    when they are dispatched."""
    return (
        not step.optional
        and step.when is None
        and all(ref.startswith("request") for b in step.inputs.values() for ref in b.refs)
    )


def check_plan_inputs(plan: Plan, data: Mapping[str, Any], contracts: Contracts) -> None:
    """Refuse a request when a step checked at admission cannot take the input it would get."""
    for step in plan.steps:
        if not checked_at_admission(step):
            continue
        check_input(
            contracts(step.capability),
            resolve_bindings(step.inputs, data, {}),
            f"steps.{step.id}.input",
            f"the input of step {step.id!r}",
        )
