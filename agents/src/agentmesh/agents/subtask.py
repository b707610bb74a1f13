"""What the worker core takes and gives back: plain data, no protobuf.

The servicer converts `ExecuteRequest` into a `Subtask` and an `Outcome`
into `ExecuteResponse` (`agents/convert.py`); the core, its checks and its
store of finished subtasks see only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from agentmesh.usage import Usage


@dataclass(frozen=True)
class Subtask:
    """One subtask to run: its ids (the idempotency key), its skill and its input."""

    request_id: str
    subtask_id: str
    capability: str
    input: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    """The scheduler's attempt number, for logs and spans only."""


@dataclass(frozen=True)
class Outcome:
    """What a subtask produced, as run now or replayed from the worker's store."""

    output: dict[str, Any]
    """The skill's output, valid against its output schema."""
    usage: Usage
    model: str
    """The model that answered; "" for backends without one."""
    duration: float
    """Seconds the run took, from getting a free slot to its output."""
    replayed: bool = False
    """Answered from the store (or from the same subtask still running), not run again."""

    def as_replayed(self) -> Outcome:
        return replace(self, replayed=True)


@dataclass(frozen=True)
class Health:
    """The worker's load and health, as its heartbeats report them."""

    in_flight: int
    capacity: int
    queue_length: int
    latency_estimate: float
    """Seconds; a peak-EWMA of recent successful runs."""
    error_rate: float
    draining: bool
