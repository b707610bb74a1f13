"""What the dispatcher works with: subtask calls, results, events, and its two interfaces.

`WorkerTransport` is how a subtask reaches a worker (gRPC in production, a
fake in unit tests); `DispatchObserver` is how metrics learn what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.records import request_key
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.scheduler.tiers import Budget
from agentmesh.tiers import Difficulty, Tier
from agentmesh.usage import Usage

if TYPE_CHECKING:
    import asyncio


@dataclass(frozen=True)
class SubtaskCall:
    """One subtask as a worker receives it."""

    #: The request's id as its caller chose it (for spans and logs); the worker is sent
    #: `key`.
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
    #: Offload: given the worker granted to this call and how many more slots it may
    #: use, claims the steps that follow this one there (see `fragments`).
    fragment: Claim | None = field(default=None, compare=False)
    #: The attempt a fragment made that did not finish it: the attempts go on from there,
    #: as after any failed attempt.
    earlier: Earlier | None = field(default=None, compare=False)
    #: The tenant whose request (or Dispatch call) it is; "" for none.
    tenant: str = ""
    #: Expected seconds of its request's work after it (`critical_path`); its queue
    #: orders by deadline less this.
    critical_path: float = 0.0

    @property
    def key(self) -> str:
        """The request id the worker is sent, its idempotency key with the subtask id: the
        request's key (`records.request_key`), so that two tenants' requests of the same
        id are different work to a worker too."""
        return request_key(self.tenant, self.request_id)


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
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        timeout: float,
        followers: Sequence[Follower] = (),
    ) -> ExecuteResult:
        """Run one attempt; raise an AgentmeshError on failure.

        `followers` (only for a worker that serves fragments) go with it, in
        the same message: the transport sets each one's `stop` once sent, and
        its `done` when it ends.
        """
        ...

    async def forget(self, worker_id: str) -> None:
        """Drop what the transport keeps for a worker that left (its channel)."""
        ...


@dataclass(frozen=True)
class Earlier:
    """An attempt made before a call (in a fragment), and how it ended."""

    worker: WorkerRecord
    attempt: int
    error: AgentmeshError


class Literal:
    """A value the scheduler resolved, among a Wire's sources."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: A Wire's default when it has none.
NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Wire:
    """One input field of a follower, taken from the outputs of its fragment's steps.

    `sources` are tried in order, as a plan Binding's references are: a
    string is a reference into a fragment step's output
    (`steps.<id>[.field...]`), a Literal a value the scheduler resolved.
    """

    field: str
    sources: tuple[str | Literal, ...]
    collect: bool = False
    default: Any = NO_DEFAULT


@dataclass(eq=False)
class Follower:
    """A step that goes to a worker with the step before it in its fragment.

    The executor makes it (`SubtaskCall.fragment`), the dispatcher gives it
    its worker and slot, the transport sends it; then the step's task
    either follows it to its end (`Dispatcher.follow`) or drops it
    (`Dispatcher.drop`).
    """

    call: SubtaskCall
    #: The id of the fragment's first step.
    fragment: str
    #: The fragment's steps it waits for.
    after: tuple[str, ...]
    wiring: tuple[Wire, ...]
    #: Its result, or the error it ended with (the transport sets it).
    done: asyncio.Future[ExecuteResult]
    attempt: int = 1
    #: The worker running the fragment (set by the dispatcher).
    worker: WorkerRecord | None = None
    #: Seconds it may take from its sending, its wait for the steps before it included.
    timeout: float = 0.0
    #: Set by the transport once sent: stops it on the worker.
    stop: Callable[[], None] | None = None
    #: Followed or dropped: its slot is accounted for.
    settled: bool = False


#: See SubtaskCall.fragment.
Claim = Callable[[WorkerRecord, int], list[Follower]]


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

    def offloaded(self, capability: str) -> None:
        """A step finished in a fragment on a worker, without a dispatch of its own."""
        ...

    def shed(self, capability: str) -> None:
        """A subtask that waited in its queue was failed: its request could no longer
        finish by its deadline."""
        ...

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

    def requests_taken_over(self, expired: int, released: int) -> None:
        """This replica took over running requests of another: `expired`, whose lease had
        expired (it died or stalled), and `released`, which it released at a clean stop."""
        ...

    def request_fenced(self) -> None:
        """This replica stopped running a request another replica took over."""
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

    def offloaded(self, capability: str) -> None:
        pass

    def shed(self, capability: str) -> None:
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

    def requests_taken_over(self, expired: int, released: int) -> None:
        pass

    def request_fenced(self) -> None:
        pass
