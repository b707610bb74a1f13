"""What the scheduler checks before it accepts work: ids, inputs, deadlines and room.

Every refusal is INVALID_ARGUMENT (with the field at fault),
DEADLINE_EXCEEDED (a deadline too short to start), or RESOURCE_EXHAUSTED
with a RetryInfo delay (too many requests, a full queue).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from agentmesh.errors import DeadlineExceeded, FieldViolation, InvalidArgument, ResourceExhausted
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.plans import Plan
from agentmesh.server.clock import Clock

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Admission:
    """The configured limits, applied to one request at a time."""

    def __init__(self, config: SchedulerConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock

    def check_input(self, data: Mapping[str, Any], size: int) -> None:
        """Refuse an empty or oversized input, naming the problem."""
        if not data:
            raise InvalidArgument(
                "the request input is empty",
                [FieldViolation("input", 'must be a non-empty object, such as {"text": "..."}')],
                reason="EMPTY_INPUT",
            )
        if size > self.config.max_input_bytes:
            raise InvalidArgument(
                f"the request input is {size} bytes, over the limit of "
                f"{self.config.max_input_bytes} bytes",
                [FieldViolation("input", f"at most {self.config.max_input_bytes} bytes")],
                reason="INPUT_TOO_LARGE",
            )
        if all(isinstance(v, str) and not v.strip() for v in data.values()):
            raise InvalidArgument(
                "the request input has only empty text",
                [FieldViolation("input", "at least one field must have content")],
                reason="EMPTY_INPUT",
            )

    def deadline_from(self, timeout: float | None) -> float:
        """The absolute deadline for a call with this much time left (None: no deadline)."""
        if timeout is None:
            timeout = self.config.default_deadline
        if timeout < self.config.min_deadline:
            raise DeadlineExceeded(
                f"the call's deadline leaves {timeout * 1000:.0f} ms, less than the "
                f"{self.config.min_deadline * 1000:.0f} ms the scheduler needs to start a request",
                reason="DEADLINE_TOO_SHORT",
            )
        return self.clock.now() + timeout

    def admit(self, plan: Plan, active: int, has_room: Callable[[str, int], bool]) -> None:
        """Refuse a plan when `active` requests are the limit or a queue it needs is full."""
        if active >= self.config.max_active_requests:
            raise ResourceExhausted(
                f"the scheduler is running {active} requests, its limit",
                retry_after=1.0,
                reason="TOO_MANY_REQUESTS",
            )
        per_capability: dict[str, int] = {}
        for step in plan.steps:
            per_capability[step.capability] = per_capability.get(step.capability, 0) + 1
        for capability, count in per_capability.items():
            if not has_room(capability, count):
                raise ResourceExhausted(
                    f"the queue for capability {capability!r} is full",
                    retry_after=1.0,
                    reason="QUEUE_FULL",
                    metadata={"capability": capability},
                )


def check_request_id(request_id: str) -> None:
    """Refuse a client-chosen request id that is not 1 to 128 safe characters."""
    if not REQUEST_ID.match(request_id):
        raise InvalidArgument(
            f"request_id {request_id[:40]!r} is not valid",
            [FieldViolation("request_id", "1 to 128 characters of [A-Za-z0-9._:-]")],
            reason="INVALID_REQUEST_ID",
        )


def json_size(data: Mapping[str, Any]) -> int:
    """The size of an input as JSON, in bytes: what the input limit counts."""
    return len(json.dumps(data, ensure_ascii=False).encode())
