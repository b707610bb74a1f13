"""Requests and subtasks as the stores keep them in rows, and back: one form for every store.

Both stores keep the same columns, with the structured ones (plan, input,
answer, error, a subtask's record) as JSON text: text, not PostgreSQL's
json types, so that whatever SQLite keeps PostgreSQL keeps too (jsonb
would reorder an answer's keys and refuse a "\\u0000"; json refuses NaN).

The `request_id` column holds a request's key (`records.request_key`): its
id qualified by its tenant ("acme/ticket-124"), or the id alone for no
tenant, so that each tenant has its own space of ids in one primary key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from agentmesh.scheduler.plans import plan_from_dict, plan_to_dict
from agentmesh.scheduler.records import ErrorRecord, RequestRecord, SubtaskRecord, split_key
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.tiers import Budget
from agentmesh.tiers import Tier
from agentmesh.usage import Usage

#: The columns of a request row, in the order `stored_request` reads them.
COLUMNS = (
    "request_id, plan, input, priority, budget, deadline, state, answer, error,"
    " created_at, finished_at, fingerprint, tenant"
)


@dataclass
class StoredRequest:
    """A request as the store returns it."""

    record: RequestRecord
    #: Wall-clock deadline (time.time()).
    deadline: float
    #: Digest of the parameters it was submitted with; empty for rows from
    #: before fingerprints were kept.
    fingerprint: str
    #: Claimed from another replica (PostgreSQL): it had released the request at a clean
    #: stop, rather than let its lease expire.
    released: bool = False


def request_row(record: RequestRecord, deadline: float, fingerprint: str) -> tuple[Any, ...]:
    """A new request's row: its key (as request_id), plan, input, priority, budget,
    deadline, state, created_at, fingerprint, tenant."""
    return (
        record.key,
        json.dumps(plan_to_dict(record.plan)),
        json.dumps(record.input),
        record.priority,
        record.budget.limit if record.budget else 0.0,
        deadline,
        str(record.state),
        record.created_at,
        fingerprint,
        record.tenant,
    )


def outcome_row(record: RequestRecord) -> tuple[Any, ...]:
    """A finished request's state, answer, error, finished_at, and its key."""
    return (
        str(record.state),
        json.dumps(record.answer) if record.answer is not None else None,
        json.dumps(asdict(record.error)) if record.error else None,
        record.finished_at,
        record.key,
    )


def subtask_row(subtask: SubtaskRecord) -> str:
    """A subtask as JSON text; by hand, as `asdict` deep-copies the output each time."""
    row = dict(vars(subtask))
    row["usage"] = vars(subtask.usage)
    row["error"] = asdict(subtask.error) if subtask.error else None
    return json.dumps(row)


def stored_request(row: tuple[Any, ...], subtask_rows: Iterable[str]) -> StoredRequest:
    """A request from its row (`COLUMNS`) and the JSON text of its subtasks' rows."""
    (
        key,
        plan,
        data,
        priority,
        budget,
        deadline,
        state,
        answer,
        error,
        created,
        finished,
        fingerprint,
        tenant,
    ) = row
    record = RequestRecord(
        request_id=split_key(key)[1],
        plan=plan_from_dict(json.loads(plan)),
        input=json.loads(data),
        priority=priority,
        # Kept as the state's name, as every version wrote it.
        state=RequestState(state),
        answer=json.loads(answer) if answer else None,
        error=ErrorRecord(**json.loads(error)) if error else None,
        created_at=created,
        finished_at=finished,
        budget=Budget(budget) if budget > 0 else None,
        tenant=tenant,
    )
    for raw in subtask_rows:
        fields = json.loads(raw)
        fields["usage"] = Usage(**fields["usage"])
        fields["state"] = SubtaskState(fields["state"])
        fields["tier"] = Tier(fields.get("tier", Tier.UNSPECIFIED))
        if fields["error"]:
            fields["error"] = ErrorRecord(**fields["error"])
        record.subtasks[fields["id"]] = SubtaskRecord(**fields)
    # Keep the plan's step order; a step with no row has not started.
    record.subtasks = {
        s.id: record.subtasks.get(s.id) or SubtaskRecord(s.id, s.capability)
        for s in record.plan.steps
    }
    if record.budget is not None:
        # What the finished subtasks cost stays spent when the request resumes.
        record.budget.spent = sum(
            s.usage.cost_usd for s in record.subtasks.values() if s.state == SubtaskState.SUCCEEDED
        )
    return StoredRequest(record, deadline, fingerprint or "")
