"""StreamSubmit on a real gRPC server: no plan event before the request is committed.

And the statuses a client sees for a store that cannot write and for a
request id reused with other parameters, with their ErrorInfo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.agents.backends import make_backend
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.runtime import Worker
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.server import SchedulerServer
from agentmesh.scheduler.store import SqliteStore
from agentmesh.status import from_rpc_error
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc
from agentmesh.wire import dict_to_struct

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
LATE = "My parcel is two weeks late and nobody answers my mails."


def read_only(store: SqliteStore, on: bool) -> None:
    """Make SQLite refuse writes on the store's connection (root ignores file modes)."""
    with store._lock:
        store._db.execute(f"PRAGMA query_only={'ON' if on else 'OFF'}")


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[tuple[SchedulerServer, aio.Channel]]:
    config = SchedulerConfig(
        listen="127.0.0.1:0", metrics_listen="", store=str(tmp_path / "s.db"), recovery_delay=0
    )
    async with SchedulerServer(config) as server:
        worker = Worker(
            WorkerConfig(scheduler=server.address, worker_id="builtin-1", capacity=4),
            make_backend("builtin", {}),
        )
        await worker.start()
        await worker.wait_registered(10)
        async with aio.insecure_channel(server.address) as channel:
            yield server, channel
        await worker.shutdown()


def stream_request(request_id: str, text: str) -> scheduler_pb2.StreamSubmitRequest:
    return scheduler_pb2.StreamSubmitRequest(
        request_id=request_id,
        workflow="support_ticket",
        input=dict_to_struct({"text": text}),
    )


async def health(channel: aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)).status


async def test_no_plan_event_before_the_request_is_committed(
    mesh: tuple[SchedulerServer, aio.Channel],
) -> None:
    server, channel = mesh
    assert server.store is not None
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    read_only(server.store, True)
    seen: list[str] = []
    with pytest.raises(grpc.RpcError) as failed:
        async for message in stub.StreamSubmit(stream_request("s-1", LATE), timeout=2):
            seen.append(message.WhichOneof("event"))
    error = from_rpc_error(failed.value)
    assert seen == []  # not even the plan: the request was never accepted
    assert (error.code_name, error.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")
    assert error.metadata["store"] == server.store.path
    assert await health(channel) != SERVING

    read_only(server.store, False)
    for _ in range(200):
        if await health(channel) == SERVING:
            break
        await asyncio.sleep(0.05)
    assert await health(channel) == SERVING
    stored_at_plan = None
    events = []
    async for message in stub.StreamSubmit(stream_request("s-1", LATE), timeout=30):
        events.append(message.WhichOneof("event"))
        if events == ["plan"]:
            stored_at_plan = server.store.load("s-1")
    assert events[0] == "plan" and events[-1] == "result"
    assert stored_at_plan is not None  # committed before the plan was sent


async def test_a_reused_request_id_is_already_exists_with_error_info(
    mesh: tuple[SchedulerServer, aio.Channel],
) -> None:
    _, channel = mesh
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    first = stream_request("s-2", LATE)
    await stub.Submit(
        scheduler_pb2.SubmitRequest(request_id="s-2", workflow=first.workflow, input=first.input),
        timeout=30,
    )
    with pytest.raises(grpc.RpcError) as refused:
        async for _ in stub.StreamSubmit(stream_request("s-2", "Another text."), timeout=10):
            pass
    error = from_rpc_error(refused.value)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "REQUEST_ID_REUSED" and error.metadata == {"request_id": "s-2"}
