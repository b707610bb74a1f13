"""A worker killed with SIGKILL and started again on its store replays what it had finished."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct
from tests.support.mesh import Mesh, completed_runs, port_of

pytestmark = pytest.mark.integration


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path)
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


def execute(port: int) -> worker_pb2.ExecuteResponse:
    """The same subtask each time, as a scheduler re-dispatching it after a lost reply sends."""
    request = worker_pb2.ExecuteRequest(
        request_id="req-restart",
        subtask_id="sentiment",
        capability="sentiment",
        input=dict_to_struct({"text": "The replacement arrived quickly and works well."}),
        attempt=2,
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        # wait_for_ready: the restarted process may not be serving yet.
        return worker_pb2_grpc.WorkerServiceStub(channel).Execute(
            request, timeout=30, wait_for_ready=True
        )


@pytest.mark.parametrize("durable", [True, False], ids=["with-store", "in-memory"])
def test_a_restarted_worker_answers_from_its_store(
    mesh: Mesh, tmp_path: Path, durable: bool
) -> None:
    store = str(tmp_path / "worker-a.db") if durable else ""
    mesh.start_worker("a", backend="sim", metrics=True, AGENTMESH_WORKER_STORE=store)
    mesh.wait_workers({"a"})
    bound = mesh.ports("a")
    port, metrics = port_of(bound.grpc), port_of(bound.metrics)
    first = execute(port)
    assert not first.replayed
    assert completed_runs(metrics) == (1, 0)

    mesh.kill("a")
    # Started again on the ports it had, as a supervisor restarts it.
    env = {
        "AGENTMESH_WORKER_LISTEN": bound.grpc,
        "AGENTMESH_WORKER_METRICS_LISTEN": bound.metrics,
        "AGENTMESH_WORKER_STORE": store,
    }
    mesh.start_worker("a", backend="sim", **env)
    again = execute(port)
    runs, replays = completed_runs(metrics)
    print(f"restarted worker ({'store' if durable else 'memory'}): {runs} runs, {replays} replays")

    assert again.output == first.output
    if durable:
        assert again.replayed and (runs, replays) == (0, 1)
        assert again.usage == first.usage and again.model == first.model
    else:
        assert not again.replayed and (runs, replays) == (1, 0)
