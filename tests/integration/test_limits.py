"""What a hostile peer must not break, against a real scheduler on loopback: a heartbeat
flood, calls beyond a connection's stream limit, oversized metadata, and a worker
registering another host's address. Each is refused, and the mesh keeps serving."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh.scheduler.beats import BeatLimiter
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from tests.support.mesh import Mesh, refused

pytestmark = pytest.mark.integration

TICKET = {"text": "My order ORD-123456 arrived broken. I want my money back!"}
STREAMS = 4


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(
        tmp_path_factory.mktemp("limits"), AGENTMESH_MAX_STREAMS_PER_CONNECTION=str(STREAMS)
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker("w1")
        mesh.wait_workers({"w1"})
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def stub(mesh: Mesh) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    # A connection of its own: channels to one target share one by default.
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(mesh.target, options=options) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


def info(worker_id: str, address: str) -> worker_pb2.WorkerInfo:
    return worker_pb2.WorkerInfo(
        worker_id=worker_id, address=address, capabilities=["sentiment"], capacity=1
    )


def still_serving(mesh: Mesh) -> None:
    request = mesh.client.submit("support_ticket", TICKET)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert "w1" in mesh.worker_ids()


def test_a_heartbeat_flood_is_refused_and_the_mesh_keeps_serving(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    stub.Register(scheduler_pb2.RegisterRequest(worker=info("flood", "127.0.0.1:1")), timeout=5)
    beats = [scheduler_pb2.HeartbeatRequest(worker_id="flood")] * (10 * BeatLimiter.burst)
    call = stub.Heartbeat(iter(beats), timeout=10)
    answered = 0
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:
            answered += 1
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert BeatLimiter.burst <= answered < 10 * BeatLimiter.burst
    assert "flood" not in mesh.worker_ids()
    still_serving(mesh)


def test_calls_beyond_a_connections_stream_limit_wait_for_a_stream(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    release = threading.Event()

    def held() -> Iterator[scheduler_pb2.HeartbeatRequest]:
        yield scheduler_pb2.HeartbeatRequest(worker_id="unknown")
        release.wait(30)

    calls = [stub.Heartbeat(held(), timeout=30) for _ in range(STREAMS)]
    try:
        # Each stream is open once its first beat is answered (REGISTER: an unknown worker).
        for call in calls:
            assert next(call).directive == scheduler_pb2.HEARTBEAT_DIRECTIVE_REGISTER
        code, _, _ = refused(stub.ListWorkers, scheduler_pb2.ListWorkersRequest(), timeout=1.0)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        # Another connection is served meanwhile.
        assert "w1" in mesh.worker_ids()
    finally:
        release.set()
        for call in calls:
            list(call)
    assert stub.ListWorkers(scheduler_pb2.ListWorkersRequest(), timeout=5).workers
    still_serving(mesh)


def test_metadata_up_to_the_limit_passes_and_oversized_is_refused(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    # Under 16 KiB (room for a bearer token) always passes; gRPC's own default refuses
    # some calls from 8 KiB.
    for _ in range(20):
        big = [("x-padding", "x" * 12_288)]
        stub.ListWorkers(scheduler_pb2.ListWorkersRequest(), timeout=5, metadata=big)
    metadata = [("x-padding", "x" * 32_768)]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListWorkers(scheduler_pb2.ListWorkersRequest(), timeout=5, metadata=metadata)
    assert caught.value.code() in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    ), caught.value
    still_serving(mesh)


@pytest.mark.parametrize("address", ["10.9.8.7:50052", "worker.example:50052", "0.0.0.0:1"])
def test_a_worker_may_not_register_another_hosts_address(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub, address: str
) -> None:
    code, message, _ = refused(
        stub.Register, scheduler_pb2.RegisterRequest(worker=info("spoof", address)), 5
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "AGENTMESH_ALLOW_FOREIGN_ADDRESS" in message
    assert "spoof" not in mesh.worker_ids()
    still_serving(mesh)


def test_foreign_addresses_are_allowed_when_configured(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_ALLOW_FOREIGN_ADDRESS="1")
    try:
        mesh.start_scheduler()
        with grpc.insecure_channel(mesh.target) as channel:
            scheduler_pb2_grpc.SchedulerServiceStub(channel).Register(
                scheduler_pb2.RegisterRequest(worker=info("nat", "10.9.8.7:50052")), timeout=5
            )
        assert "nat" in mesh.worker_ids()
    finally:
        mesh.stop()
