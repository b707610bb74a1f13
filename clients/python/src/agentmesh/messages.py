"""The SchedulerService requests the Python clients build, and the names callers use
to say what a request runs (a workflow, a plan, a `Goal`) and how much of it an answer
carries (`BASIC`, `FULL`): shared by `agentmesh.client.Client` and `AsyncClient`, and
importable from `agentmesh.client`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypedDict

from google.protobuf import struct_pb2

from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import dict_to_struct

#: How much of a Request an answer carries (agentmesh.v1.RequestView): UNSPECIFIED leaves
#: it to the call's default, BASIC is everything but the plan and the subtasks, FULL is all.
View: TypeAlias = scheduler_pb2.RequestView.ValueType
UNSPECIFIED: View = scheduler_pb2.REQUEST_VIEW_UNSPECIFIED
BASIC: View = scheduler_pb2.REQUEST_VIEW_BASIC
FULL: View = scheduler_pb2.REQUEST_VIEW_FULL


@dataclass(frozen=True)
class Goal:
    """A free-form goal, planned by a worker offering the `plan` skill."""

    text: str


#: What a request runs: a workflow's name, a plan, or a goal.
Source = str | plan_pb2.Plan | Goal


class SourceFields(TypedDict, total=False):
    """The `source` oneof of SubmitRequest, StreamSubmitRequest and DecomposeRequest."""

    workflow: str
    plan: plan_pb2.Plan
    goal: str


class SubmitFields(SourceFields, total=False):
    """The fields SubmitRequest and StreamSubmitRequest share."""

    request_id: str
    input: struct_pb2.Struct
    priority: plan_pb2.Priority.ValueType
    cost_budget_usd: float
    view: View


def source_fields(source: Source) -> SourceFields:
    if isinstance(source, plan_pb2.Plan):
        return {"plan": source}
    if isinstance(source, Goal):
        return {"goal": source.text}
    return {"workflow": source}


def submit_fields(
    source: Source,
    data: Mapping[str, Any],
    request_id: str,
    priority: int,
    budget: float,
    view: int,
) -> SubmitFields:
    return {
        "request_id": request_id,
        "input": dict_to_struct(dict(data)),
        "priority": plan_pb2.Priority.ValueType(priority),
        "cost_budget_usd": budget,
        # An open enum, as priority: a value outside it is the scheduler's to refuse.
        "view": View(view),
        **source_fields(source),
    }


#: Metadata sent with every call: the bearer token, if any.
Metadata: TypeAlias = tuple[tuple[str, str], ...] | None


def credentials(token: str | None) -> Metadata:
    """The call metadata for a token (None: `AGENTMESH_TOKEN`, if set; "": none)."""
    token = os.environ.get("AGENTMESH_TOKEN", "") if token is None else token
    return (("authorization", f"Bearer {token.strip()}"),) if token.strip() else None


def dispatch_request(
    capability: str, data: Mapping[str, Any], request_id: str, priority: int, difficulty: int
) -> scheduler_pb2.DispatchRequest:
    return scheduler_pb2.DispatchRequest(
        request_id=request_id,
        capability=capability,
        input=dict_to_struct(dict(data)),
        # The enums' values as the contract types them: open enums, any int32 goes.
        priority=plan_pb2.Priority.ValueType(priority),
        difficulty=plan_pb2.Difficulty.ValueType(difficulty),
    )
