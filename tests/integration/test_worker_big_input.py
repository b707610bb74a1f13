"""A worker process with big inputs: it refuses what is over a skill's budget, keeps
serving while inputs at the budget run, and stops the work of a cancelled subtask."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.errors import InvalidArgument
from agentmesh.server.skills import SKILLS, input_bytes
from agentmesh.status import from_rpc_error
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct
from tests.integration.test_scheduler_gone import worker_counts
from tests.support.mesh import ROOT, Mesh, port_of, wait_for

pytestmark = pytest.mark.integration

SKILL = SKILLS["draft_reply"]  # the builtin skill with the most work per byte


def text_of(size: int) -> str:
    """Ticket-like text (the example tickets and report, mixed) whose input is `size` bytes."""
    tickets = [json.loads(p.read_text())["text"] for p in sorted(ROOT.glob("examples/tickets/*"))]
    report = (ROOT / "examples" / "long_document.txt").read_text().split("\n\n")
    pieces = [p for pair in zip(report, tickets * 20, strict=False) for p in pair]
    text = "\n\n".join(pieces * (size // len("\n\n".join(pieces)) + 1))
    while input_bytes({"text": text}) > size:
        text = text[: len(text) - (input_bytes({"text": text}) - size)]
    return text


AT_BUDGET = text_of(SKILL.max_input_bytes)


def request(subtask_id: str, text: str, capability: str = SKILL.name) -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id="big-1",
        subtask_id=subtask_id,
        capability=capability,
        input=dict_to_struct({"text": text}),
        attempt=1,
    )


class Worker:
    """One builtin worker process in a mesh, and a channel to it."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        mesh.start_worker("big", metrics=True, AGENTMESH_CAPACITY="4")
        mesh.wait_workers({"big"})
        bound = mesh.ports("big")
        self.port, self.metrics = port_of(bound.grpc), port_of(bound.metrics)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = worker_pb2_grpc.WorkerServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def in_flight(self) -> int:
        return worker_counts(self.metrics)["in_flight"]

    def cpu_seconds(self) -> float:
        """CPU time the worker process has used (user and system)."""
        pid = self.mesh.processes["big"].pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    mesh = Mesh(tmp_path)
    try:
        mesh.start_scheduler()
        worker = Worker(mesh)
        yield worker
        worker.channel.close()
    finally:
        mesh.stop()


def test_an_input_over_the_budget_is_refused_at_once(worker: Worker) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        worker.stub.Execute(request("huge", "x" * (1 << 20)), timeout=10)
    error = from_rpc_error(raised.value)
    assert isinstance(error, InvalidArgument) and error.reason == "INPUT_TOO_LARGE"
    [violation] = error.violations
    assert violation.field == "input" and str(SKILL.max_input_bytes) in violation.description
    assert worker_counts(worker.metrics).get("OK", 0) == 0  # nothing ran


def test_the_worker_keeps_serving_while_big_inputs_run(worker: Worker) -> None:
    big = [worker.stub.Execute.future(request(f"big-{i}", AT_BUDGET), timeout=60) for i in range(3)]
    wait_for(lambda: worker.in_flight() == 3, 10, "the big subtasks to run")
    beat = heartbeat(worker)

    # While they run: health checks, heartbeats and a small subtask are all answered.
    check = worker.health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    small = worker.stub.Execute(request("small", "Thanks, it works!", "sentiment"), timeout=5)
    assert small.output["label"] == "positive"
    wait_for(lambda: heartbeat(worker) > beat, 5, "a heartbeat while the big subtasks run")
    still_running = sum(not f.done() for f in big)
    print(f"\nbig subtasks still running when the small one was answered: {still_running} of 3")
    assert still_running > 0

    for future in big:
        assert future.result().output["reply"]


def test_a_cancelled_big_subtask_frees_its_slot_and_cpu(worker: Worker) -> None:
    big = [worker.stub.Execute.future(request(f"big-{i}", AT_BUDGET), timeout=60) for i in range(4)]
    wait_for(lambda: worker.in_flight() == 4, 10, "the big subtasks to run")
    for future in big:
        future.cancel()  # as a live scheduler cancels an attempt
    wait_for(lambda: worker.in_flight() == 0, 10, "the cancelled subtasks to give their slots back")
    wait_for(lambda: idle(worker), 5, "the cancelled subtasks' work to stop")
    counts = worker_counts(worker.metrics)
    print(
        f"\ncancelled big subtasks: {counts.get('CANCELLED', 0)}; completed: {counts.get('OK', 0)}"
    )
    assert counts.get("CANCELLED", 0) == 4 and counts.get("OK", 0) == 0
    small = worker.stub.Execute(request("small", "Thanks, it works!", "sentiment"), timeout=5)
    assert small.output["label"] == "positive"


def heartbeat(worker: Worker) -> float:
    [status] = [w for w in worker.mesh.client.list_workers() if w.info.worker_id == "big"]
    return status.last_heartbeat.ToDatetime().timestamp()


def idle(worker: Worker) -> bool:
    """Whether the worker used under a tenth of a CPU over the next 0.3 s: an idle worker
    only beats and serves metrics, a working one keeps a whole CPU busy."""
    before = worker.cpu_seconds()
    time.sleep(0.3)  # the interval the rate is measured over, not a wait for a condition
    return worker.cpu_seconds() - before < 0.03
