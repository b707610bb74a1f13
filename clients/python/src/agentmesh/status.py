"""The one place where agentmesh errors become gRPC statuses and back.

Servers abort with `to_grpc_status(error)`; it carries typed details
(google.rpc.BadRequest, RetryInfo, ErrorInfo) rather than prose alone.
Clients turn a failed call back into the same error class with
`from_rpc_error`.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentmesh.errors import (
    AgentmeshError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    error_for_code,
)

#: google.rpc.ErrorInfo.domain of every agentmesh error.
ERROR_DOMAIN = "agentmesh.dev"


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status_proto(error: AgentmeshError) -> status_pb2.Status:
    """A google.rpc.Status for the error, with its typed details."""
    details: list[any_pb2.Any] = []
    if isinstance(error, InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, ResourceExhausted):
        seconds = max(error.retry_after, 0.0)
        delay = duration_pb2.Duration(seconds=math.floor(seconds), nanos=int((seconds % 1) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if error.reason:
        details.append(
            _pack(
                error_details_pb2.ErrorInfo(
                    reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
                )
            )
        )
    return status_pb2.Status(
        code=code_pb2.Code.Value(error.code_name), message=error.message, details=details
    )


def to_grpc_status(error: AgentmeshError) -> grpc.Status:
    """The grpc.Status to abort a call with (`context.abort_with_status`)."""
    return rpc_status.to_status(to_status_proto(error))


def error_from_status(status: status_pb2.Status) -> AgentmeshError:
    """The agentmesh error a google.rpc.Status stands for, details included."""
    code_name = code_pb2.Code.Name(status.code)
    violations: list[FieldViolation] = []
    retry_after = 0.0
    reason = ""
    metadata: dict[str, str] = {}
    for detail in status.details:
        # Unpack fills the message only when the detail is of its type.
        bad = error_details_pb2.BadRequest()
        info = error_details_pb2.RetryInfo()
        error_info = error_details_pb2.ErrorInfo()
        if detail.Unpack(bad):
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Unpack(info):
            retry_after = info.retry_delay.ToTimedelta().total_seconds()
        elif detail.Unpack(error_info):
            reason, metadata = error_info.reason, dict(error_info.metadata)
    return error_for_code(
        code_name,
        status.message,
        violations=violations,
        retry_after=retry_after,
        reason=reason,
        metadata=metadata,
    )


def from_rpc_error(error: grpc.RpcError) -> AgentmeshError:
    """The agentmesh error behind a failed gRPC call."""
    # from_call reads only the code, details and trailing metadata, which every
    # RpcError grpc raises for a call has (grpc.aio's is no grpc.Call).
    status: status_pb2.Status | None = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        code = error.code()
        details = error.details() or code.name
        result = error_for_code(code.name, details)
    else:
        result = error_from_status(status)
    result.cause = error
    return result
