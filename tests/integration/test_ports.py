"""Servers on port 0 report the ports they got: in the ports file, and in a log line."""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.agents.builtin import BuiltinBackend
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.runtime import Worker
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.server import SchedulerServer
from agentmesh.server import ports
from tests.support.mesh import ANY_PORT, Mesh

pytestmark = pytest.mark.integration


async def serving(address: str) -> bool:
    async with aio.insecure_channel(address) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def metrics_text(address: str) -> str:
    return urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()


def announced(caplog: pytest.LogCaptureFixture, message: str) -> dict[str, str]:
    record = next(r for r in caplog.records if r.getMessage() == message)
    return {"grpc": record.grpc, "metrics": record.metrics}  # type: ignore[attr-defined]


async def test_scheduler_and_worker_on_port_0_write_what_they_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentmesh.server.ports")
    scheduler_file, worker_file = tmp_path / "scheduler.json", tmp_path / "worker.json"
    config = SchedulerConfig(
        listen=ANY_PORT, metrics_listen=ANY_PORT, store="", ports_file=str(scheduler_file)
    )
    async with SchedulerServer(config) as scheduler:
        bound = ports.read(scheduler_file)
        assert bound is not None and bound.pid == os.getpid()
        assert bound.grpc == scheduler.address and not bound.grpc.endswith(":0")
        assert bound.metrics == f"127.0.0.1:{scheduler.metrics_port}"
        assert await serving(bound.grpc)
        assert "agentmesh_workers" in metrics_text(bound.metrics)
        assert announced(caplog, "scheduler serving") == {
            "grpc": bound.grpc,
            "metrics": bound.metrics,
        }

        worker_config = WorkerConfig(
            scheduler=bound.grpc,
            listen=ANY_PORT,
            metrics_listen=ANY_PORT,
            ports_file=str(worker_file),
        )
        async with Worker(worker_config, BuiltinBackend()) as worker:
            await worker.wait_registered(10)
            got = ports.read(worker_file)
            assert got is not None and got.grpc == worker.address
            assert len({bound.grpc, bound.metrics, got.grpc, got.metrics}) == 4
            assert await serving(got.grpc)
            assert "agentmesh_worker_in_flight" in metrics_text(got.metrics)
            assert announced(caplog, "worker serving") == {
                "grpc": got.grpc,
                "metrics": got.metrics,
            }


def test_the_processes_report_their_ports_and_a_restart_keeps_them(tmp_path: Path) -> None:
    """What `Mesh` relies on: `agentmesh scheduler` and `agentmesh worker` on port 0."""
    mesh = Mesh(tmp_path)
    try:
        mesh.start_scheduler()
        first = mesh.ports("scheduler")
        assert first.grpc == mesh.target and first.metrics.endswith(f":{mesh.metrics_port}")
        mesh.start_worker("w1", metrics=True)
        mesh.wait_workers({"w1"})
        worker = mesh.ports("w1")
        assert "agentmesh_worker_info" in metrics_text(worker.metrics)
        assert f'"grpc": "{worker.grpc}"' in mesh.log("w1")  # the log line says the same

        mesh.kill("scheduler")
        mesh.start_scheduler()
        again = mesh.ports("scheduler")
        assert (again.grpc, again.metrics) == (first.grpc, first.metrics)
        assert again.pid != first.pid
        mesh.wait_workers({"w1"})  # the worker found it where it was
    finally:
        mesh.stop()
