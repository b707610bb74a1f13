"""The worker runtime on a real gRPC server: idempotency, concurrency bound, schemas, drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest
from grpc import aio

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.runtime import Worker
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.server import SchedulerServer
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct

pytestmark = pytest.mark.integration


class CountingBackend:
    """A real Backend implementation that counts runs and can be held or misbehave."""

    name = "counting"
    model = "counting-1"
    input_price_per_mtok = 0.15
    output_price_per_mtok = 0.6

    def __init__(self, output: dict[str, Any] | None = None) -> None:
        self.runs = 0
        self.running = 0
        self.peak = 0
        self.release = asyncio.Event()
        self.release.set()
        self.output = output

    def capabilities(self) -> frozenset[str]:
        return frozenset({"sentiment"})

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        self.runs += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        output = self.output if self.output is not None else {"label": "neutral", "score": 0.0}
        return BackendResult(output, Usage(input_tokens=3, output_tokens=2), self.model)


@pytest.fixture
async def scheduler() -> AsyncIterator[SchedulerServer]:
    async with SchedulerServer(
        SchedulerConfig(listen="127.0.0.1:0", metrics_listen="", heartbeat_interval=0.2, store="")
    ) as server:
        yield server


async def start_worker(
    scheduler: SchedulerServer, backend: CountingBackend, capacity: int = 2
) -> Worker:
    worker = Worker(
        WorkerConfig(scheduler=scheduler.address, capacity=capacity, worker_id="counting-1"),
        backend,
    )
    await worker.start()
    await worker.wait_registered(10)
    return worker


def execute_request(subtask_id: str, text: str = "fine") -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id="r1",
        subtask_id=subtask_id,
        capability="sentiment",
        input=dict_to_struct({"text": text}),
        attempt=1,
    )


async def test_a_repeated_subtask_is_answered_from_the_store(scheduler: SchedulerServer) -> None:
    backend = CountingBackend()
    worker = await start_worker(scheduler, backend)
    async with aio.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        first = await stub.Execute(execute_request("s1"), timeout=5)
        again = await stub.Execute(execute_request("s1"), timeout=5)
    await worker.shutdown()
    assert backend.runs == 1
    assert not first.replayed and again.replayed
    assert again.output == first.output
    assert again.usage.input_tokens == 3


async def test_a_duplicate_of_a_running_subtask_waits_for_it(scheduler: SchedulerServer) -> None:
    backend = CountingBackend()
    backend.release.clear()
    worker = await start_worker(scheduler, backend)
    async with aio.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        calls = [
            asyncio.ensure_future(stub.Execute(execute_request("s1"), timeout=5)) for _ in range(3)
        ]
        await asyncio.sleep(0.2)
        backend.release.set()
        results = await asyncio.gather(*calls)
    await worker.shutdown()
    assert backend.runs == 1
    assert sorted(r.replayed for r in results) == [False, True, True]


async def test_concurrency_is_bounded_by_capacity(scheduler: SchedulerServer) -> None:
    backend = CountingBackend()
    backend.release.clear()
    worker = await start_worker(scheduler, backend, capacity=2)
    async with aio.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        calls = [
            asyncio.ensure_future(stub.Execute(execute_request(f"s{i}"), timeout=5))
            for i in range(5)
        ]
        await asyncio.sleep(0.2)
        report = worker.health_report()
        assert (report.in_flight, report.queue_length) == (2, 3)
        backend.release.set()
        await asyncio.gather(*calls)
    await worker.shutdown()
    assert backend.peak == 2 and backend.runs == 5


async def test_invalid_input_and_invalid_output_get_their_codes(scheduler: SchedulerServer) -> None:
    backend = CountingBackend(output={"label": "ecstatic", "score": 7})
    worker = await start_worker(scheduler, backend)
    async with aio.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        bad_input = worker_pb2.ExecuteRequest(
            request_id="r", subtask_id="x", capability="sentiment", input=dict_to_struct({"txt": 1})
        )
        with pytest.raises(grpc.RpcError) as error:
            await stub.Execute(bad_input, timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "text" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            await stub.Execute(execute_request("y"), timeout=5)
        assert error.value.code() == grpc.StatusCode.INTERNAL
        assert "fails its schema" in error.value.details()
        unknown = worker_pb2.ExecuteRequest(
            request_id="r",
            subtask_id="z",
            capability="translate",
            input=dict_to_struct({"text": "a"}),
        )
        with pytest.raises(grpc.RpcError) as error:
            await stub.Execute(unknown, timeout=5)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await worker.shutdown()


async def test_shutdown_drains_and_leaves_the_mesh(scheduler: SchedulerServer) -> None:
    backend = CountingBackend()
    backend.release.clear()
    worker = await start_worker(scheduler, backend)
    assert scheduler.core.registry.get("counting-1") is not None
    async with aio.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        running = asyncio.ensure_future(stub.Execute(execute_request("s1"), timeout=5))
        await asyncio.sleep(0.1)
        drain = asyncio.ensure_future(worker.shutdown())
        await asyncio.sleep(0.3)
        record = scheduler.core.registry.get("counting-1")
        assert record is not None and record.draining  # told the scheduler before leaving
        backend.release.set()
        result = await running
        await drain
        await worker.shutdown()  # idempotent
    assert result.output["label"] == "neutral"
    for _ in range(50):
        if scheduler.core.registry.get("counting-1") is None:
            break
        await asyncio.sleep(0.05)
    assert scheduler.core.registry.get("counting-1") is None
