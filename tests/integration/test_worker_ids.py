"""Execute's idempotency key names one piece of work: ids, capability and input together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest
from grpc import aio

from agentmesh.errors import AgentmeshError, FailedPrecondition, InvalidArgument
from agentmesh.scheduler.server import SchedulerServer
from agentmesh.status import from_rpc_error
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct
from tests.integration.test_worker import CountingBackend, scheduler, start_worker

pytestmark = pytest.mark.integration
__all__ = ["scheduler"]  # the fixture, shared with test_worker


def request(
    request_id: str = "r1", subtask_id: str = "s1", capability: str = "sentiment", text: str = "ok"
) -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id=request_id,
        subtask_id=subtask_id,
        capability=capability,
        input=dict_to_struct({"text": text}),
        attempt=1,
    )


class TwoSkills(CountingBackend):
    def capabilities(self) -> frozenset[str]:
        return frozenset({"sentiment", "detect_language"})


Pair = tuple[worker_pb2_grpc.WorkerServiceStub, TwoSkills]


@pytest.fixture
async def stub(
    scheduler: SchedulerServer,
) -> AsyncIterator[tuple[worker_pb2_grpc.WorkerServiceStub, TwoSkills]]:
    backend = TwoSkills()
    worker = await start_worker(scheduler, backend)
    async with aio.insecure_channel(worker.address) as channel:
        yield worker_pb2_grpc.WorkerServiceStub(channel), backend
    await worker.shutdown()


async def refused(call: Awaitable[object]) -> AgentmeshError:
    with pytest.raises(grpc.RpcError) as raised:
        await call
    return from_rpc_error(raised.value)


async def test_empty_ids_are_refused_not_run_or_replayed(stub: Pair) -> None:
    worker, backend = stub
    error = await refused(worker.Execute(request("", ""), timeout=5))
    assert isinstance(error, InvalidArgument) and error.reason == "MISSING_ID"
    assert [v.field for v in error.violations] == ["request_id", "subtask_id"]
    error = await refused(worker.Execute(request("r1", "", "detect_language"), timeout=5))
    assert [v.field for v in error.violations] == ["subtask_id"]
    assert backend.runs == 0


async def test_the_same_ids_for_other_work_are_refused(stub: Pair) -> None:
    worker, backend = stub
    first = await worker.Execute(request(text="fine"), timeout=5)
    assert not first.replayed
    again = await worker.Execute(request(text="fine"), timeout=5)
    assert again.replayed
    other_capability = await refused(
        worker.Execute(request(capability="detect_language", text="fine"), timeout=5)
    )
    other_input = await refused(worker.Execute(request(text="awful"), timeout=5))
    for error in (other_capability, other_input):
        assert isinstance(error, FailedPrecondition) and error.reason == "SUBTASK_MISMATCH"
    assert other_capability.metadata["differs"] == "capability"
    assert other_input.metadata["differs"] == "input"
    assert backend.runs == 1


async def test_the_same_ids_for_other_work_are_refused_while_running(stub: Pair) -> None:
    worker, backend = stub
    backend.release.clear()
    running = asyncio.ensure_future(worker.Execute(request(text="fine"), timeout=5))
    for _ in range(100):
        if backend.runs:
            break
        await asyncio.sleep(0.02)
    error = await refused(worker.Execute(request(text="other"), timeout=5))
    assert isinstance(error, FailedPrecondition) and error.reason == "SUBTASK_MISMATCH"
    backend.release.set()
    assert not (await running).replayed
    assert backend.runs == 1


async def test_an_input_over_the_skills_budget_is_refused_naming_the_limit(stub: Pair) -> None:
    worker, backend = stub
    error = await refused(worker.Execute(request(text="a" * 70_000), timeout=5))
    assert isinstance(error, InvalidArgument) and error.reason == "INPUT_TOO_LARGE"
    [violation] = error.violations
    assert violation.field == "input"
    assert "at most" in violation.description and "bytes" in violation.description
    assert backend.runs == 0
