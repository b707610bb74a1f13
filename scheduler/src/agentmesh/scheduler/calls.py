"""What the dispatcher works with: subtask calls, results, events, and its two interfaces.

`WorkerTransport` is how a subtask reaches a worker (gRPC in production, a
fake in unit tests); `DispatchObserver` is how metrics learn what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.scheduler.tiers import Budget
from agentmesh.tiers import Difficulty, Tier
from agentmesh.usage import Usage


@dataclass(frozen=True)
class SubtaskCall:
    """One subtask as a worker receives it."""

    request_id: str
    subtask_id: str
    capability: str
    input: dict[str, Any]
    priority: int = 0
    difficulty: Difficulty = Difficulty.UNSPECIFIED
    #: Absolute deadline on the dispatcher's clock.
    deadline: float = float("inf")
    #: The request's cost budget, shared by its subtasks; None for no limit.
    budget: Budget | None = field(default=None, compare=False)
    #: A worker to prefer when it is free (the one that ran it before a restart).
    prefer: str = ""
    #: Expected seconds of its request's work after it (`critical_path`); its queue
    #: orders by deadline less this.
    critical_path: float = 0.0


@dataclass(frozen=True)
class ExecuteResult:
    """What a worker returned for one attempt."""

    output: dict[str, Any]
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    #: Seconds the worker spent on it.
    duration: float = 0.0
    #: The worker answered from its store of finished subtasks.
    replayed: bool = False


@dataclass(frozen=True)
class Outcome:
    """A finished subtask: the result and how it was obtained."""

    result: ExecuteResult
    worker_id: str
    attempts: int
    #: The tier of the worker that produced the result.
    tier: Tier = Tier.UNSPECIFIED


class WorkerTransport(Protocol):
    """How the dispatcher reaches a worker."""

    async def execute(
        self, worker: WorkerRecord, call: SubtaskCall, attempt: int, timeout: float
    ) -> ExecuteResult:
        """Run one attempt; raise an AgentmeshError on failure."""
        ...

    async def forget(self, worker_id: str) -> None:
        """Drop what the transport keeps for a worker that left (its channel)."""
        ...


class EventKind(StrEnum):
    """Kinds of progress events: agentmesh.v1.SubtaskEventKind's names, without the prefix."""

    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    RETRIED = "RETRIED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


STARTED, SUCCEEDED, RETRIED, FAILED, SKIPPED = EventKind


@dataclass(frozen=True)
class SubtaskEvent:
    kind: EventKind
    subtask_id: str
    capability: str
    worker_id: str = ""
    attempt: int = 0
    message: str = ""


EventSink = Callable[[SubtaskEvent], None]


def ignore_events(event: SubtaskEvent) -> None:
    """An EventSink for callers that do not follow progress."""


class DispatchObserver(Protocol):
    """Hooks for metrics; every method is called synchronously and must be cheap."""

    def attempt_finished(
        self, capability: str, worker_id: str, seconds: float, code: str
    ) -> None: ...

    def retried(self, capability: str, code: str) -> None: ...

    def retry_refused(self, capability: str) -> None: ...

    def hedged(self, capability: str) -> None: ...

    def worker_ejected(self, worker_id: str) -> None: ...

    def queue_waited(self, capability: str, seconds: float) -> None: ...

    def overhead(self, seconds: float) -> None: ...

    def subtask_finished(
        self, capability: str, tier: int | None, outcome: str, usage: Usage, model: str
    ) -> None: ...

    def worker_evicted(self, reason: str) -> None: ...

    def request_finished(self, workflow: str, outcome: str, code: str, seconds: float) -> None:
        """An accepted request ended: its workflow ("" for a plan), state and status code."""
        ...

    def request_refused(self, workflow: str, code: str) -> None:
        """A request was answered with an error before it was accepted."""
        ...


class NullObserver:
    """An observer that records nothing."""

    def attempt_finished(self, capability: str, worker_id: str, seconds: float, code: str) -> None:
        pass

    def retried(self, capability: str, code: str) -> None:
        pass

    def retry_refused(self, capability: str) -> None:
        pass

    def hedged(self, capability: str) -> None:
        pass

    def worker_ejected(self, worker_id: str) -> None:
        pass

    def queue_waited(self, capability: str, seconds: float) -> None:
        pass

    def overhead(self, seconds: float) -> None:
        pass

    def subtask_finished(
        self, capability: str, tier: int | None, outcome: str, usage: Usage, model: str
    ) -> None:
        pass

    def worker_evicted(self, reason: str) -> None:
        pass

    def request_finished(self, workflow: str, outcome: str, code: str, seconds: float) -> None:
        pass

    def request_refused(self, workflow: str, code: str) -> None:
        pass
