"""A worker's own skill, declared at registration, in a real mesh.

The worker here is written in the test with grpc alone, as a worker in another
language would be: it serves WorkerService, registers `reverse_text` with its
JSON Schemas and keeps a Heartbeat stream open. The scheduler checks inputs
against that contract before any Execute reaches it, refuses a second worker
declaring `reverse_text` with another schema, and lists the contract.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from agentmesh.errors import FailedPrecondition
from agentmesh.server.skills import SKILLS
from agentmesh.status import from_rpc_error
from agentmesh.v1 import plan_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2, worker_pb2_grpc
from agentmesh.wire import struct_to_dict
from tests.support.mesh import ROOT, Mesh, refused, running_mesh, struct, wait_for

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
REVERSE_IN = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 200}},
    "required": ["text"],
}
REVERSE_OUT = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
DESCRIPTION = "Reverse a text, character by character."


def reverse_spec(input_schema: dict[str, Any] = REVERSE_IN) -> worker_pb2.SkillSpec:
    return worker_pb2.SkillSpec(
        name="reverse_text",
        description=DESCRIPTION,
        input_schema=struct(input_schema),
        output_schema=struct(REVERSE_OUT),
        max_input_bytes=1024,
        difficulty=plan_pb2.DIFFICULTY_SIMPLE,
    )


class Reverser(worker_pb2_grpc.WorkerServiceServicer):
    """Execute for `reverse_text`, counting what reaches it."""

    def __init__(self) -> None:
        self.executed: list[dict[str, Any]] = []

    def Execute(
        self, request: worker_pb2.ExecuteRequest, context: grpc.ServicerContext
    ) -> worker_pb2.ExecuteResponse:
        data = struct_to_dict(request.input)
        self.executed.append(data)
        return worker_pb2.ExecuteResponse(output=struct({"text": str(data["text"])[::-1]}))


class RawWorker:
    """A worker made of grpc alone: a WorkerService, Register, and a Heartbeat stream."""

    def __init__(self, scheduler: str, worker_id: str) -> None:
        self.worker_id = worker_id
        self.servicer = Reverser()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self.servicer, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()
        self.channel = grpc.insecure_channel(scheduler)
        self.stub = scheduler_pb2_grpc.SchedulerServiceStub(self.channel)
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def register(self, spec: worker_pb2.SkillSpec) -> None:
        """Register with the spec; raises grpc.RpcError when refused. Then beat."""
        info = worker_pb2.WorkerInfo(
            worker_id=self.worker_id,
            address=self.address,
            capabilities=[spec.name],
            backend="raw",
            tier=worker_pb2.TIER_BUILTIN,
            capacity=2,
        )
        self.stub.Register(scheduler_pb2.RegisterRequest(worker=info, skills=[spec]), timeout=5)
        self._beats = threading.Thread(target=self._beat, daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        def beats() -> Iterator[scheduler_pb2.HeartbeatRequest]:
            while not self._stop.wait(0.1):
                yield scheduler_pb2.HeartbeatRequest(
                    worker_id=self.worker_id, health=worker_pb2.WorkerHealth(capacity=2)
                )

        try:
            for _ in self.stub.Heartbeat(beats()):
                pass
        except grpc.RpcError:
            pass  # the channel closed on stop

    def stop(self) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join(5)
        self.channel.close()
        self.server.stop(0)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("skill-specs"), workers=("py1",)) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def reverser(mesh: Mesh) -> Iterator[RawWorker]:
    worker = RawWorker(mesh.target, "rev-1")
    worker.register(reverse_spec())
    mesh.wait_workers({"rev-1"})
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def stub(mesh: Mesh) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    with grpc.insecure_channel(mesh.target) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


def reverse_plan(text_ref: str = "request.text") -> plan_pb2.Plan:
    return plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id="rev",
                capability="reverse_text",
                inputs={"text": plan_pb2.Binding(refs=[text_ref])},
            )
        ],
        answer={"reversed": plan_pb2.Binding(refs=["steps.rev.text"])},
    )


def test_a_plan_using_a_workers_own_skill_runs_end_to_end(
    reverser: RawWorker, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    before = len(reverser.servicer.executed)
    response = stub.Submit(
        scheduler_pb2.SubmitRequest(
            plan=reverse_plan(),
            input=struct({"text": "stressed"}),
            view=scheduler_pb2.REQUEST_VIEW_FULL,
        ),
        timeout=30,
    )
    assert struct_to_dict(response.request.answer) == {"reversed": "desserts"}
    assert response.request.subtasks[0].worker_id == "rev-1"
    assert reverser.servicer.executed[before:] == [{"text": "stressed"}]


def test_an_input_breaking_the_declared_schema_is_refused_before_any_execute(
    reverser: RawWorker, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    before = len(reverser.servicer.executed)
    code, message, violations = refused(
        stub.Submit,
        scheduler_pb2.SubmitRequest(plan=reverse_plan(), input=struct({"text": "x" * 201})),
    )
    assert code == Code.INVALID_ARGUMENT, message
    assert "'rev'" in message and "reverse_text" in message
    assert set(violations) == {"steps.rev.input.text"}, violations
    # Dispatch checks the same contract, and so does its input budget (1024 bytes).
    code, _, violations = refused(
        stub.Dispatch,
        scheduler_pb2.DispatchRequest(capability="reverse_text", input=struct({"text": 7})),
    )
    assert code == Code.INVALID_ARGUMENT and set(violations) == {"input.text"}
    code, message, _ = refused(
        stub.Dispatch,
        scheduler_pb2.DispatchRequest(
            capability="reverse_text", input=struct({"text": "ok", "pad": "p" * 2000})
        ),
    )
    assert code == Code.INVALID_ARGUMENT and "1024 bytes" in message
    assert len(reverser.servicer.executed) == before  # nothing reached the worker


def test_a_second_worker_with_another_schema_is_refused_naming_both(
    mesh: Mesh, reverser: RawWorker
) -> None:
    other = RawWorker(mesh.target, "rev-2")
    try:
        with pytest.raises(grpc.RpcError) as raised:
            other.register(reverse_spec({**REVERSE_IN, "required": ["text", "mode"]}))
        error = from_rpc_error(raised.value)
        assert isinstance(error, FailedPrecondition) and error.reason == "SKILL_CONFLICT"
        assert "reverse_text" in error.message
        assert "rev-1" in error.message and "rev-2" in error.message
        assert error.metadata == {
            "capability": "reverse_text",
            "worker_id": "rev-2",
            "conflicting_worker_id": "rev-1",
        }
        assert "rev-2" not in mesh.worker_ids()
        # The same schemas are the same contract: a second worker is welcome.
        other.register(reverse_spec())
        mesh.wait_workers({"rev-1", "rev-2"})
    finally:
        other.stop()
    wait_for(lambda: "rev-2" not in mesh.worker_ids(), 15, "rev-2 to leave")


def test_a_bad_schema_is_refused_with_its_field(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    info = worker_pb2.WorkerInfo(
        worker_id="bad-1", address="127.0.0.1:1", capabilities=["odd"], capacity=1
    )
    bad = worker_pb2.SkillSpec(name="odd", input_schema=struct({"type": "objekt"}))
    code, _, violations = refused(
        stub.Register, scheduler_pb2.RegisterRequest(worker=info, skills=[bad])
    )
    assert code == Code.INVALID_ARGUMENT and set(violations) == {"skills[0].input_schema"}
    code, _, violations = refused(
        stub.Register,
        scheduler_pb2.RegisterRequest(
            worker=info, skills=[worker_pb2.SkillSpec(name="odd", difficulty=9)]
        ),
    )
    assert code == Code.INVALID_ARGUMENT and "skills[0].difficulty" in violations


def agentmesh_skills(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "skills", "--target", mesh.target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_agentmesh_skills_lists_the_live_contracts(mesh: Mesh, reverser: RawWorker) -> None:
    run = agentmesh_skills(mesh, "--json")
    assert run.returncode == 0, run.stderr
    skills = {s["name"]: s for s in json.loads(run.stdout)}
    assert skills["reverse_text"] == {
        "name": "reverse_text",
        "description": DESCRIPTION,
        "workers": ["rev-1"],
        "input_schema": REVERSE_IN,
        "output_schema": REVERSE_OUT,
        "max_input_bytes": 1024,
        "difficulty": "simple",
    }
    # The Python worker sent its skills' contracts: the catalogue's.
    sentiment = skills["sentiment"]
    assert sentiment["workers"] == ["py1"]
    assert sentiment["description"] == SKILLS["sentiment"].description
    assert sentiment["input_schema"] == SKILLS["sentiment"].input_schema
    assert sentiment["output_schema"] == SKILLS["sentiment"].output_schema
    table = agentmesh_skills(mesh)
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if x.startswith("reverse_text"))
    assert "rev-1" in line and DESCRIPTION in line


def test_a_refused_python_worker_logs_what_the_scheduler_said(tmp_path: Path) -> None:
    """A worker whose contract conflicts keeps trying, and its log names the conflict."""
    with running_mesh(tmp_path, workers=()) as mesh:
        other = RawWorker(mesh.target, "raw-1")
        try:
            strict = {**SKILLS["sentiment"].input_schema, "required": ["text", "locale"]}
            spec = worker_pb2.SkillSpec(
                name="sentiment",
                input_schema=struct(strict),
                output_schema=struct(SKILLS["sentiment"].output_schema),
            )
            other.register(spec)
            mesh.wait_workers({"raw-1"})
            mesh.start_worker("py-1", skills="sentiment")
            wait_for(
                lambda: "raw-1" in mesh.log("py-1") and "cannot register" in mesh.log("py-1"),
                30,
                "the refused worker to log the conflict",
            )
            assert "py-1" not in mesh.worker_ids()
        finally:
            other.stop()
