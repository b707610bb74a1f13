"""Translation between agentmesh.v1 protobuf messages and the core's data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, struct_pb2

from agentmesh.scheduler.calls import EventKind, SubtaskEvent
from agentmesh.scheduler.plans import EQUALS, NOT_EQUALS, Binding, Condition, Plan, Step
from agentmesh.scheduler.records import RequestRecord, SubtaskRecord
from agentmesh.scheduler.registry import HealthReport, WorkerRecord, WorkerSpec
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.server.skillspecs import skill_from_proto, skill_to_proto
from agentmesh.v1 import plan_pb2, scheduler_pb2, worker_pb2
from agentmesh.wire import (
    dict_to_struct,
    difficulty_from_proto,
    difficulty_to_proto,
    duration,
    tier_from_proto,
    tier_to_proto,
    timestamp,
    to_python,
    usage_to_proto,
)

# The core's states and agentmesh.v1's: the same names, with the enum's prefix.
SUBTASK_STATES = {
    state: scheduler_pb2.SubtaskState.Value(f"SUBTASK_STATE_{state.value}")
    for state in SubtaskState
}
REQUEST_STATES = {
    state: scheduler_pb2.RequestState.Value(f"REQUEST_STATE_{state.value}")
    for state in RequestState
}
EVENT_KINDS = {
    kind: scheduler_pb2.SubtaskEventKind.Value(f"SUBTASK_EVENT_KIND_{kind.value}")
    for kind in EventKind
}

_OPERATORS = {
    plan_pb2.CONDITION_OPERATOR_EQUALS: EQUALS,
    plan_pb2.CONDITION_OPERATOR_NOT_EQUALS: NOT_EQUALS,
}


def _value_to_python(value: struct_pb2.Value) -> Any:
    if value.WhichOneof("kind") is None:
        return None
    return to_python(value, "plan")


def _python_to_value(data: Any) -> struct_pb2.Value | None:
    if data is None:
        return None
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


# -- plans ------------------------------------------------------------------------


def binding_from_proto(message: plan_pb2.Binding) -> Binding:
    value = _value_to_python(message.value) if message.HasField("value") else None
    return Binding(refs=tuple(message.refs), collect=message.collect, value=value)


def binding_to_proto(binding: Binding) -> plan_pb2.Binding:
    return plan_pb2.Binding(
        refs=binding.refs, collect=binding.collect, value=_python_to_value(binding.value)
    )


def plan_from_proto(message: plan_pb2.Plan) -> Plan:
    steps = []
    for s in message.steps:
        when = None
        if s.HasField("when"):
            when = Condition(
                ref=s.when.ref,
                operator=_OPERATORS.get(s.when.operator, "unspecified"),
                value=_value_to_python(s.when.value),
            )
        steps.append(
            Step(
                id=s.id,
                capability=s.capability,
                inputs={k: binding_from_proto(b) for k, b in s.inputs.items()},
                depends_on=tuple(s.depends_on),
                priority=s.priority,
                difficulty=difficulty_from_proto(s.difficulty),
                optional=s.optional,
                when=when,
            )
        )
    return Plan(
        steps=tuple(steps),
        answer={k: binding_from_proto(b) for k, b in message.answer.items()},
        workflow=message.workflow,
    )


def plan_to_proto(plan: Plan) -> plan_pb2.Plan:
    operators = {v: k for k, v in _OPERATORS.items()}
    message = plan_pb2.Plan(workflow=plan.workflow)
    for step in plan.steps:
        s = message.steps.add(
            id=step.id,
            capability=step.capability,
            depends_on=step.depends_on,
            priority=plan_pb2.Priority.ValueType(step.priority),
            difficulty=difficulty_to_proto(step.difficulty),
            optional=step.optional,
        )
        for name, binding in step.inputs.items():
            s.inputs[name].CopyFrom(binding_to_proto(binding))
        if step.when is not None:
            s.when.CopyFrom(
                plan_pb2.Condition(
                    ref=step.when.ref,
                    operator=operators[step.when.operator],
                    value=_python_to_value(step.when.value),
                )
            )
    for name, binding in plan.answer.items():
        message.answer[name].CopyFrom(binding_to_proto(binding))
    return message


# -- requests -----------------------------------------------------------------------


def _error(code: str, message: str) -> scheduler_pb2.Error:
    return scheduler_pb2.Error(code=code, message=message)


def subtask_to_proto(subtask: SubtaskRecord) -> scheduler_pb2.Subtask:
    message = scheduler_pb2.Subtask(
        id=subtask.id,
        capability=subtask.capability,
        state=SUBTASK_STATES[subtask.state],
        worker_id=subtask.worker_id,
        fragment=subtask.fragment,
        model=subtask.model,
        attempts=subtask.attempts,
        duration=duration(subtask.duration),
        usage=usage_to_proto(subtask.usage),
        reason=subtask.reason,
        tier=tier_to_proto(subtask.tier),
    )
    if subtask.output is not None:
        message.output.CopyFrom(dict_to_struct(subtask.output))
    if subtask.error is not None:
        message.error.CopyFrom(_error(subtask.error.code, subtask.error.message))
    return message


def request_to_proto(record: RequestRecord, *, full: bool = True) -> scheduler_pb2.Request:
    """A request as agentmesh.v1 sees it: FULL, or BASIC (`full=False`: no plan, no subtasks).

    BASIC does not convert the plan and the subtasks at all: on Submit's hot
    path they are most of the work of an answer.
    """
    message = scheduler_pb2.Request(
        request_id=record.request_id,
        workflow=record.plan.workflow,
        state=REQUEST_STATES[record.state],
        usage=usage_to_proto(record.usage),
        created_at=timestamp(record.created_at),
        finished_at=timestamp(record.finished_at),
        cost_budget_usd=record.budget.limit if record.budget else 0.0,
    )
    if full:
        message.plan.CopyFrom(plan_to_proto(record.plan))
        message.subtasks.extend(subtask_to_proto(s) for s in record.subtasks.values())
    if record.answer is not None:
        message.answer.CopyFrom(dict_to_struct(record.answer))
    if record.error is not None:
        message.error.CopyFrom(_error(record.error.code, record.error.message))
    return message


def event_to_proto(event: SubtaskEvent) -> scheduler_pb2.SubtaskEvent:
    return scheduler_pb2.SubtaskEvent(
        subtask_id=event.subtask_id,
        capability=event.capability,
        kind=EVENT_KINDS[event.kind],
        worker_id=event.worker_id,
        attempt=event.attempt,
        message=event.message,
    )


# -- workers ------------------------------------------------------------------------


def worker_spec_from_proto(
    info: worker_pb2.WorkerInfo, skills: Iterable[worker_pb2.SkillSpec] = ()
) -> WorkerSpec:
    """A registration's declaration, with the skill specs as sent (`skillbook` completes them)."""
    return WorkerSpec(
        worker_id=info.worker_id,
        address=info.address,
        capabilities=frozenset(info.capabilities),
        capacity=info.capacity,
        backend=info.backend,
        model=info.model,
        tier=tier_from_proto(info.tier),
        input_price_per_mtok=info.input_price_per_mtok,
        output_price_per_mtok=info.output_price_per_mtok,
        execute_stream=info.execute_stream,
        fragments=info.fragments,
        skills=tuple(skill_from_proto(s, f"skills[{i}]") for i, s in enumerate(skills)),
    )


def worker_info_to_proto(spec: WorkerSpec) -> worker_pb2.WorkerInfo:
    return worker_pb2.WorkerInfo(
        worker_id=spec.worker_id,
        address=spec.address,
        capabilities=sorted(spec.capabilities),
        backend=spec.backend,
        model=spec.model,
        tier=tier_to_proto(spec.tier),
        capacity=spec.capacity,
        input_price_per_mtok=spec.input_price_per_mtok,
        output_price_per_mtok=spec.output_price_per_mtok,
        execute_stream=spec.execute_stream,
        fragments=spec.fragments,
    )


def health_from_proto(health: worker_pb2.WorkerHealth) -> HealthReport:
    return HealthReport(
        in_flight=health.in_flight,
        capacity=health.capacity,
        queue_length=health.queue_length,
        latency=health.latency_estimate.ToTimedelta().total_seconds(),
        error_rate=health.error_rate,
        draining=health.draining,
    )


def health_to_proto(report: HealthReport) -> worker_pb2.WorkerHealth:
    return worker_pb2.WorkerHealth(
        in_flight=report.in_flight,
        capacity=report.capacity,
        queue_length=report.queue_length,
        latency_estimate=duration(report.latency),
        error_rate=report.error_rate,
        draining=report.draining,
    )


def worker_status_to_proto(
    record: WorkerRecord, now: float, wall_now: float
) -> scheduler_pb2.WorkerStatus:
    return scheduler_pb2.WorkerStatus(
        info=worker_info_to_proto(record.spec),
        state=scheduler_pb2.WORKER_STATE_DRAINING
        if record.draining
        else scheduler_pb2.WORKER_STATE_EJECTED
        if record.ejected_until > now
        else scheduler_pb2.WORKER_STATE_ACTIVE,
        health=health_to_proto(record.health),
        in_flight=record.in_flight,
        latency_estimate=duration(record.latency_estimate(now)),
        error_rate=record.errors.rate(now),
        last_heartbeat=timestamp(wall_now - (now - record.last_heartbeat)),
        skills=[skill_to_proto(s) for s in record.spec.skills],
    )
