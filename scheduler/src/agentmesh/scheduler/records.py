"""What the scheduler keeps of a request: its record, each step's, and their errors.

The executor fills them in as a plan runs; the store writes them (a
`Journal` takes every subtask transition) and reads them back after a
restart; `convert` shows them to clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentmesh.errors import AgentmeshError, FieldViolation, error_for_code
from agentmesh.scheduler.plans import Plan
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.tiers import Budget
from agentmesh.server import logs
from agentmesh.tiers import Tier
from agentmesh.usage import Usage

#: Between a tenant and a request id in a request's key. Request ids cannot hold it
#: (admission.check_request_id), so a key is split at its last one whatever the tenant.
TENANT_SEPARATOR = "/"


def request_key(tenant: str, request_id: str) -> str:
    """The key a request is kept under, in memory and in the stores: its id qualified by
    its tenant ("acme/ticket-124"), so that each tenant has its own space of ids; the id
    alone for no tenant, as every request was keyed before tenants had their own."""
    return f"{tenant}{TENANT_SEPARATOR}{request_id}" if tenant else request_id


def split_key(key: str) -> tuple[str, str]:
    """The tenant and the request id of a request's key (`request_key`)."""
    tenant, _, request_id = key.rpartition(TENANT_SEPARATOR)
    return tenant, request_id


def key_fields(key: str) -> dict[str, str]:
    """The log fields of the request kept under `key`: its id, and its tenant where it has
    one (`logs.request_fields`)."""
    tenant, request_id = split_key(key)
    return logs.request_fields(request_id, tenant)


@dataclass(frozen=True)
class ErrorRecord:
    code: str
    message: str
    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: The fields at fault, for INVALID_ARGUMENT.
    violations: tuple[FieldViolation, ...] = ()

    def __post_init__(self) -> None:
        # Loaded from JSON, violations arrive as dicts.
        object.__setattr__(
            self,
            "violations",
            tuple(
                v if isinstance(v, FieldViolation) else FieldViolation(**v) for v in self.violations
            ),
        )

    @classmethod
    def of(cls, error: AgentmeshError) -> ErrorRecord:
        return cls(
            error.code_name,
            error.message,
            error.reason,
            dict(error.metadata),
            getattr(error, "violations", ()),
        )

    def to_error(self, **metadata: str) -> AgentmeshError:
        """The error this record stands for, with its violations and extra metadata."""
        return error_for_code(
            self.code,
            self.message,
            violations=self.violations,
            reason=self.reason,
            metadata={**self.metadata, **metadata},
        )


@dataclass
class SubtaskRecord:
    id: str
    capability: str
    state: SubtaskState = SubtaskState.PENDING
    output: dict[str, Any] | None = None
    worker_id: str = ""
    model: str = ""
    attempts: int = 0
    started_at: float | None = None
    duration: float = 0.0
    usage: Usage = field(default_factory=Usage)
    reason: str = ""
    error: ErrorRecord | None = None
    #: The tier of the worker that produced the output.
    tier: Tier = Tier.UNSPECIFIED
    #: The first step of the fragment it ran in on `worker_id` (see `fragments`), if any.
    fragment: str = ""


@dataclass
class RequestRecord:
    """A request as the scheduler keeps it, from acceptance to its outcome."""

    request_id: str
    plan: Plan
    input: dict[str, Any]
    priority: int = 0
    state: RequestState = RequestState.RUNNING
    subtasks: dict[str, SubtaskRecord] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    error: ErrorRecord | None = None
    #: Wall-clock times (time.time()), for users.
    created_at: float = 0.0
    finished_at: float | None = None
    #: The cost budget its subtasks share; None for no limit.
    budget: Budget | None = None
    #: The tenant of the caller that submitted it (its token's `tenant` claim); "" when
    #: tokens are not checked. Only that tenant's callers (and admins) see it.
    tenant: str = ""
    #: The fencing epoch its run holds it at in a store shared by several schedulers
    #: (pgreplicas.py): the epoch last read from the store until a run takes it; 0 else.
    epoch: int = 0

    @property
    def key(self) -> str:
        """What the scheduler keeps it under: its id in its tenant's space (`request_key`)."""
        return request_key(self.tenant, self.request_id)

    @property
    def finished(self) -> bool:
        return self.state != RequestState.RUNNING

    @property
    def usage(self) -> Usage:
        subtasks = self.subtasks.values()
        return Usage(
            input_tokens=sum(s.usage.input_tokens for s in subtasks),
            output_tokens=sum(s.usage.output_tokens for s in subtasks),
            cost_usd=sum(s.usage.cost_usd for s in subtasks),
        )


def new_record(
    request_id: str,
    plan: Plan,
    data: dict[str, Any],
    priority: int,
    created_at: float,
    cost_budget: float = 0.0,
    tenant: str = "",
) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        plan=plan,
        input=data,
        priority=priority,
        subtasks={s.id: SubtaskRecord(s.id, s.capability) for s in plan.steps},
        created_at=created_at,
        budget=Budget(cost_budget) if cost_budget > 0 else None,
        tenant=tenant,
    )


class Journal(Protocol):
    """Where every subtask transition is written (the store), if anywhere."""

    def save_subtask(self, key: str, subtask: SubtaskRecord) -> None:
        """Write a subtask of the request kept under `key` (`RequestRecord.key`)."""
        ...
