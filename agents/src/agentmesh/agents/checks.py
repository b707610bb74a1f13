"""What a worker checks before it runs, or replays, a subtask: ids, the work, the input.

Every refusal is an AgentmeshError that the servicer maps to its status:
INVALID_ARGUMENT with field violations for a bad request, and
FAILED_PRECONDITION (reason SUBTASK_MISMATCH) for ids that name other work
than the worker ran, or is running, under them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from agentmesh.agents.subtask import Subtask
from agentmesh.errors import FailedPrecondition, FieldViolation, InvalidArgument
from agentmesh.server.skills import Skill, input_bytes, input_violations


class Ids(Protocol):
    """What names a subtask: a `Subtask`, or the ExecuteRequest it comes from."""

    @property
    def request_id(self) -> str: ...

    @property
    def subtask_id(self) -> str: ...


def check_ids(request: Ids) -> None:
    """Refuse a call without its request id or subtask id: they are the idempotency key."""
    violations = [
        FieldViolation(name, "must not be empty: it is part of the idempotency key")
        for name in ("request_id", "subtask_id")
        if not getattr(request, name)
    ]
    if violations:
        raise InvalidArgument(
            "Execute needs a request_id and a subtask_id",
            violations,
            reason="MISSING_ID",
        )


def check_same_work(
    request: Subtask, digest: str, capability: str, kept_digest: str, state: str
) -> None:
    """Refuse a repeat whose ids name a subtask that ran (or runs) other work.

    Answering it would hand one caller another's output; running it would
    make the ids mean two things.
    """
    if (request.capability, digest) == (capability, kept_digest):
        return
    what = "capability" if request.capability != capability else "input"
    raise FailedPrecondition(
        f"subtask {request.subtask_id!r} of request {request.request_id!r} is {state} on this "
        f"worker with another {what} ({capability!r}); a repeat must send the same capability "
        "and input, and new work needs new ids",
        reason="SUBTASK_MISMATCH",
        metadata={"capability": request.capability, "differs": what},
    )


def check_input(skill: Skill, data: Mapping[str, Any]) -> None:
    """Refuse an input over the skill's budget or against its schema (INVALID_ARGUMENT)."""
    size = input_bytes(data)
    if size > skill.max_input_bytes:
        raise InvalidArgument(
            f"the input for {skill.name} is {size} bytes, over its limit of "
            f"{skill.max_input_bytes} bytes",
            [FieldViolation("input", f"at most {skill.max_input_bytes} bytes as JSON (UTF-8)")],
            reason="INPUT_TOO_LARGE",
            metadata={"capability": skill.name, "max_input_bytes": str(skill.max_input_bytes)},
        )
    violations = input_violations(skill, data)
    if violations:
        raise InvalidArgument(
            f"input for {skill.name} is invalid: "
            + "; ".join(f"{f}: {d}" for f, d in violations[:5]),
            [FieldViolation(f, d) for f, d in violations],
            reason="INVALID_INPUT",
        )
