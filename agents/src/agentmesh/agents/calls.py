"""The subtask a backend is running now, for backends that need more than its input.

`Backend.run` takes a skill and its input; a skill written in Python also
gets the subtask's ids, attempt and deadline (`SkillContext`). The core sets
`CURRENT` before it starts a run's task, and the task inherits it (asyncio
copies the context into every task it creates), so concurrent runs each see
their own.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from agentmesh.agents.subtask import Subtask
from agentmesh.server.clock import Clock


@dataclass(frozen=True)
class SubtaskCall:
    """One run of a subtask: what it is, and until when it may run."""

    subtask: Subtask
    deadline: float | None
    """On `clock`; None when the caller set no deadline."""
    clock: Clock


CURRENT: ContextVar[SubtaskCall | None] = ContextVar("agentmesh_subtask_call", default=None)
"""The run in progress in this task, or None outside a worker core's run."""
