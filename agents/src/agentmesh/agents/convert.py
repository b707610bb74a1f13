"""The worker's protobuf edge: agentmesh.v1 messages to and from the core's plain data.

The servicer, the membership calls and the SQLite store of finished
subtasks (whose rows hold serialised `ExecuteResponse`s, as earlier
versions wrote them) convert here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2

from agentmesh.agents.subtask import Health, Outcome, Subtask
from agentmesh.agents.wiring import Source, Wire
from agentmesh.server.refs import MISSING
from agentmesh.tiers import Tier
from agentmesh.v1 import worker_pb2
from agentmesh.wire import (
    dict_to_struct,
    duration,
    struct_to_dict,
    tier_to_proto,
    usage_from_proto,
    usage_to_proto,
)


def subtask_from_proto(request: worker_pb2.ExecuteRequest) -> Subtask:
    """An Execute call's subtask; InvalidArgument for an input JSON cannot hold."""
    return Subtask(
        request_id=request.request_id,
        subtask_id=request.subtask_id,
        capability=request.capability,
        input=struct_to_dict(request.input),
        attempt=request.attempt,
    )


def wiring_from_proto(fields: Iterable[worker_pb2.WiredField]) -> tuple[Wire, ...]:
    """A fragment step's wiring; InvalidArgument for a literal JSON cannot hold."""
    return tuple(
        Wire(
            field=wired.field,
            sources=tuple(
                Source(ref=source.ref)
                if source.WhichOneof("source") == "ref"
                else Source(value=_value(source.value, f"wiring[{i}].sources[{j}].value"))
                for j, source in enumerate(wired.sources)
            ),
            collect=wired.collect,
            default=(
                _value(wired.default_value, f"wiring[{i}].default_value")
                if wired.HasField("default_value")
                else MISSING
            ),
        )
        for i, wired in enumerate(fields)
    )


def _value(value: struct_pb2.Value, field: str) -> Any:
    # Read as a Struct's member: whole numbers come back as int, as in every input.
    holder = struct_pb2.Struct()
    holder.fields["value"].CopyFrom(value)
    return struct_to_dict(holder, field)["value"]


def outcome_to_proto(outcome: Outcome) -> worker_pb2.ExecuteResponse:
    return worker_pb2.ExecuteResponse(
        output=dict_to_struct(outcome.output),
        usage=usage_to_proto(outcome.usage),
        model=outcome.model,
        duration=duration(outcome.duration),
        replayed=outcome.replayed,
    )


def outcome_from_proto(response: worker_pb2.ExecuteResponse) -> Outcome:
    return Outcome(
        output=struct_to_dict(response.output, "output"),
        usage=usage_from_proto(response.usage),
        model=response.model,
        duration=response.duration.ToNanoseconds() / 1e9,
        replayed=response.replayed,
    )


def health_to_proto(health: Health) -> worker_pb2.WorkerHealth:
    return worker_pb2.WorkerHealth(
        in_flight=health.in_flight,
        capacity=health.capacity,
        queue_length=health.queue_length,
        latency_estimate=duration(health.latency_estimate),
        error_rate=health.error_rate,
        draining=health.draining,
    )


def info_to_proto(
    *,
    worker_id: str,
    address: str,
    capabilities: list[str],
    backend: str,
    model: str,
    tier: Tier,
    capacity: int,
    input_price_per_mtok: float,
    output_price_per_mtok: float,
    execute_stream: bool,
) -> worker_pb2.WorkerInfo:
    """What a worker declares when it registers: with ExecuteStream, plan fragments on it."""
    return worker_pb2.WorkerInfo(
        worker_id=worker_id,
        address=address,
        capabilities=capabilities,
        backend=backend,
        model=model,
        tier=tier_to_proto(tier),
        capacity=capacity,
        input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok,
        execute_stream=execute_stream,
        fragments=execute_stream,
    )
