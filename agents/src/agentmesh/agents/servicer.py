"""WorkerService: protobuf in, the worker core, protobuf out, errors mapped by `handlers`."""

from __future__ import annotations

from typing import Any

from grpc import aio

from agentmesh.agents.checks import check_ids
from agentmesh.agents.convert import outcome_to_proto, subtask_from_proto
from agentmesh.agents.core import WorkerCore
from agentmesh.server import telemetry
from agentmesh.server.handlers import unary
from agentmesh.v1 import worker_pb2, worker_pb2_grpc

SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
EXECUTE = f"{SERVICE_NAME}/Execute"
Context = aio.ServicerContext[Any, Any]


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Serves Execute on a `WorkerCore`; the call's deadline becomes the subtask's."""

    def __init__(self, core: WorkerCore) -> None:
        self.core = core

    @unary
    async def Execute(
        self, request: worker_pb2.ExecuteRequest, context: Context
    ) -> worker_pb2.ExecuteResponse:
        with telemetry.server_span(
            EXECUTE,
            context.invocation_metadata(),
            **{
                telemetry.REQUEST_ID: request.request_id,
                telemetry.SUBTASK_ID: request.subtask_id,
                telemetry.CAPABILITY: request.capability,
                telemetry.WORKER_ID: self.core.worker_id,
                telemetry.ATTEMPT: request.attempt,
            },
        ) as span:
            check_ids(request)  # before the input is read: missing ids are the first refusal
            subtask = subtask_from_proto(request)
            left = context.time_remaining()
            deadline = None if left is None else self.core.clock.now() + left
            outcome = await self.core.execute(subtask, deadline)
            span.set_attribute("agentmesh.replayed", outcome.replayed)
            return outcome_to_proto(outcome)
