"""The dispatcher's way to workers: WorkerService.Execute over gRPC."""

from __future__ import annotations

import grpc
from grpc import aio

from agentmesh.errors import AgentmeshError, Unavailable
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.server import telemetry
from agentmesh.status import from_rpc_error
from agentmesh.usage import Usage
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct, difficulty_to_proto, struct_to_dict


class GrpcTransport:
    """One channel per worker, opened on first use and closed when it leaves.

    A worker that registers again under the same id at another address (it
    restarted on a new port) gets a new channel.
    """

    def __init__(self) -> None:
        self._channels: dict[
            str, tuple[str, aio.Channel, worker_pb2_grpc.WorkerServiceAsyncStub]
        ] = {}

    async def _stub(self, worker: WorkerRecord) -> worker_pb2_grpc.WorkerServiceAsyncStub:
        entry = self._channels.get(worker.worker_id)
        if entry is not None and entry[0] != worker.spec.address:
            await self.forget(worker.worker_id)
            entry = None
        if entry is None:
            channel = aio.insecure_channel(worker.spec.address)
            entry = (worker.spec.address, channel, worker_pb2_grpc.WorkerServiceStub(channel))
            self._channels[worker.worker_id] = entry
        return entry[2]

    async def execute(
        self, worker: WorkerRecord, call: SubtaskCall, attempt: int, timeout: float
    ) -> ExecuteResult:
        request = worker_pb2.ExecuteRequest(
            request_id=call.request_id,
            subtask_id=call.subtask_id,
            capability=call.capability,
            input=dict_to_struct(call.input),
            difficulty=difficulty_to_proto(call.difficulty),
            attempt=attempt,
        )
        try:
            stub = await self._stub(worker)
        except Exception as error:  # an address grpc cannot use
            raise Unavailable(
                f"cannot reach worker {worker.worker_id} at {worker.spec.address!r}: {error}",
                reason="WORKER_UNREACHABLE",
            ) from None
        try:
            response = await stub.Execute(
                request, timeout=max(timeout, 0.001), metadata=telemetry.outgoing_metadata()
            )
        except grpc.RpcError as error:
            failure = from_rpc_error(error)
            if failure.code_name == "UNKNOWN":
                # A worker's unexplained failure: ours to report as INTERNAL, never UNKNOWN.
                raise AgentmeshError(
                    f"worker {worker.worker_id} failed: {failure.message}", reason="WORKER_FAILED"
                ) from None
            raise failure from None
        return ExecuteResult(
            output=struct_to_dict(response.output),
            usage=Usage(
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                cost_usd=response.usage.cost_usd,
            ),
            model=response.model,
            duration=response.duration.ToTimedelta().total_seconds(),
            replayed=response.replayed,
        )

    async def forget(self, worker_id: str) -> None:
        entry = self._channels.pop(worker_id, None)
        if entry is not None:
            await entry[1].close()

    async def close(self) -> None:
        for worker_id in list(self._channels):
            await self.forget(worker_id)
