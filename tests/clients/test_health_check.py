"""`agentmesh health` against grpcio's own health servicer: each serving status read
from the wire (the request and response as protobuf's wrappers) and its exit status."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agentmesh.cli import main
from tests.support.mesh import refusing_address


@pytest.fixture
def servicer() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (health_pb2.HealthCheckResponse.SERVING, 0),
        (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
        (health_pb2.HealthCheckResponse.UNKNOWN, 1),
    ],
)
def test_the_status_is_printed_and_only_serving_exits_0(
    servicer: tuple[str, health.HealthServicer],
    status: int,
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, health_servicer = servicer
    health_servicer.set("agentmesh.v1.SchedulerService", status)
    given = ["health", "--target", target, "--service", "agentmesh.v1.SchedulerService"]
    assert main(given) == code
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    assert capsys.readouterr().out == f"{name}\n"


def test_the_server_as_a_whole_is_the_empty_service(
    servicer: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    target, health_servicer = servicer
    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert main(["health", "--target", target]) == 1
    assert capsys.readouterr().out == "NOT_SERVING\n"
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert main(["health", "--target", target]) == 0


def test_no_server_is_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    with refusing_address() as target:
        assert main(["health", "--target", target, "--timeout", "2"]) == 1
    assert capsys.readouterr().err.startswith("agentmesh: UNAVAILABLE")
