"""The JavaScript worker (agents/node) in a real mesh: a scheduler with no Python worker,
the Node worker as a real process, plans and calls that run on it, drain and eviction."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2, worker_pb2, worker_pb2_grpc
from tests.support.mesh import ROOT, Mesh, refused, struct, wait_for

NODE_WORKER = ROOT / "agents" / "node"
MODULES = NODE_WORKER / "node_modules" / ".package-lock.json"
FRENCH = "Bonjour, je n'ai pas reçu ma commande et je voudrais un remboursement."

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not MODULES.exists(),
    reason="needs Node.js 20 and the Node worker's modules (make agents/node/node_modules/"
    ".package-lock.json)",
)


class NodeWorker:
    """`node agents/node/src/main.js` as a child process, logging to a file."""

    def __init__(self, mesh: Mesh, name: str, **env: str) -> None:
        self.name = name
        self.log_path = mesh.log_dir / f"{name}.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["node", str(NODE_WORKER / "src" / "main.js")],
            env={
                **os.environ,
                "AGENTMESH_SCHEDULER": mesh.target,
                "AGENTMESH_WORKER_ID": name,
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        # The address it advertises is the port it bound, printed once it serves.
        self.address = str(wait_for(self._address, 30, f"{name} to serve"))

    def _address(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log()}")
        found = re.search(r"serving detect_language on (\S+),", self.log())
        return found.group(1) if found else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """A scheduler alone: nothing offers detect_language until a Node worker does."""
    mesh = Mesh(tmp_path, AGENTMESH_WORKER_WAIT="2")
    try:
        mesh.start_scheduler()
        assert not mesh.worker_ids()
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def node(mesh: Mesh) -> Iterator[Callable[..., NodeWorker]]:
    """Starts Node workers registering with the mesh; kills what is left on leaving."""
    with node_workers(mesh) as start:
        yield start


@contextmanager
def node_workers(mesh: Mesh) -> Iterator[Callable[..., NodeWorker]]:
    """`start(name, **env)` starts a Node worker registering with `mesh`; those started
    are stopped on leaving."""
    started: list[NodeWorker] = []

    def start(name: str, **env: str) -> NodeWorker:
        started.append(NodeWorker(mesh, name, **env))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def status_of(mesh: Mesh, worker_id: str) -> scheduler_pb2.WorkerStatus | None:
    try:
        workers = mesh.client.list_workers(timeout=2.0)
    except AgentmeshError:
        return None
    return next((w for w in workers if w.info.worker_id == worker_id), None)


def language_plan() -> plan_pb2.Plan:
    return plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id="lang",
                capability="detect_language",
                inputs={"text": plan_pb2.Binding(refs=["request.text"])},
            )
        ],
        answer={"language": plan_pb2.Binding(refs=["steps.lang.language"])},
    )


def execute(
    request_id: str, input: dict[str, object], capability: str = "detect_language"
) -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id=request_id, subtask_id="s1", capability=capability, input=struct(input)
    )


def test_a_plan_runs_on_the_node_worker_and_sigterm_deregisters_it(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-1")
    wait_for(lambda: status_of(mesh, "node-1"), 30, "node-1 to register")
    listed = status_of(mesh, "node-1")
    assert listed is not None
    assert listed.info.address == worker.address and not worker.address.endswith(":0")
    assert list(listed.info.capabilities) == ["detect_language"]
    assert listed.info.tier == worker_pb2.TIER_BUILTIN and listed.info.capacity == 4
    assert listed.state == scheduler_pb2.WORKER_STATE_ACTIVE
    wait_for(lambda: status_of(mesh, "node-1").health.capacity == 4, 10, "a health report")

    request = mesh.client.submit(
        language_plan(), {"text": FRENCH}, request_id="plan-1", view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    (subtask,) = request.subtasks
    assert subtask.worker_id == "node-1" and subtask.attempts == 1
    assert dict(subtask.output) == {"language": "fr", "confidence": subtask.output["confidence"]}
    assert 0 <= subtask.output["confidence"] <= 1
    assert request.answer["language"] == "fr"
    dispatched = mesh.client.dispatch(
        "detect_language", {"text": "Where is my parcel? It is late."}
    )
    assert dispatched.worker_id == "node-1" and dispatched.output["language"] == "en"

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(15) == 0
    assert status_of(mesh, "node-1") is None
    # It left by closing its Heartbeat stream, not by falling silent.
    assert "heartbeat stream ended; evicting" in mesh.log("scheduler")
    assert "draining" in worker.log() and "stopped" in worker.log()


def test_the_node_worker_keeps_the_execute_contract(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-1")
    with grpc.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        first = stub.Execute(execute("r1", {"text": FRENCH}), timeout=10)
        assert not first.replayed and first.output["language"] == "fr"
        again = stub.Execute(execute("r1", {"text": FRENCH}), timeout=10)
        assert again.replayed and again.output == first.output
        assert again.duration == first.duration  # the stored answer, not a new run

        other = execute("r1", {"text": "something else"})
        code, message, _ = refused(stub.Execute, other)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "input" in message

        code, _, violations = refused(stub.Execute, execute("r2", {"text": 5}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert (
            set(violations) == {"input.text"} and "not of type 'string'" in violations["input.text"]
        )
        code, _, violations = refused(stub.Execute, execute("r3", {"txt": "hi"}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "input" in violations
        too_big = execute("r4", {"text": "a" * 300_000})
        code, _, violations = refused(stub.Execute, too_big)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "262144" in violations["input"]
        code, _, violations = refused(stub.Execute, execute("", {"text": "hi"}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and set(violations) == {"request_id"}
        code, _, _ = refused(stub.Execute, execute("r5", {"text": "hi"}, "summarize"))
        assert code == grpc.StatusCode.UNIMPLEMENTED

        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "agentmesh.v1.WorkerService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for r in replies for s in r.list_services_response.service}
        assert {"agentmesh.v1.WorkerService", "grpc.health.v1.Health"} <= services


def test_a_deadline_and_a_cancelled_call_free_the_slot(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("slow", AGENTMESH_NODE_WORKER_DELAY="30", AGENTMESH_CAPACITY="1")
    with grpc.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        code, _, _ = refused(stub.Execute, execute("d1", {"text": "hi"}), timeout=0.5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        future = stub.Execute.future(execute("c1", {"text": "hi"}), timeout=30)
        wait_for(
            lambda: status_of(mesh, "slow") and status_of(mesh, "slow").health.in_flight == 1,
            10,
            "the subtask to hold the worker's only slot",
        )
        future.cancel()
        # Cancelled, the work stops: the slot is free again and the next beat says so.
        wait_for(lambda: status_of(mesh, "slow").health.in_flight == 0, 10, "the slot to be freed")


def test_sigterm_finishes_the_subtask_in_flight_before_leaving(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-1", AGENTMESH_NODE_WORKER_DELAY="1.5")
    wait_for(lambda: status_of(mesh, "node-1"), 30, "node-1 to register")
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["request"] = mesh.client.submit(
            language_plan(), {"text": FRENCH}, timeout=20, view=scheduler_pb2.REQUEST_VIEW_FULL
        )

    thread = threading.Thread(target=run)
    thread.start()
    # The worker's own report (health), not the scheduler's count: the call has arrived.
    wait_for(lambda: status_of(mesh, "node-1").health.in_flight == 1, 10, "the subtask on node-1")
    worker.process.send_signal(signal.SIGTERM)
    wait_for(
        lambda: (
            (s := status_of(mesh, "node-1")) is None
            or s.state == scheduler_pb2.WORKER_STATE_DRAINING
        ),
        5,
        "node-1 to drain",
    )
    thread.join(20)
    request = outcome["request"]
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert request.subtasks[0].worker_id == "node-1"
    assert worker.process.wait(15) == 0
    assert status_of(mesh, "node-1") is None


def test_a_node_worker_killed_mid_run_is_evicted(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("victim", AGENTMESH_NODE_WORKER_DELAY="30")
    wait_for(lambda: status_of(mesh, "victim"), 30, "victim to register")
    failure: dict[str, AgentmeshError] = {}

    def run() -> None:
        try:
            mesh.client.dispatch("detect_language", {"text": FRENCH}, timeout=20)
        except AgentmeshError as error:
            failure["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: status_of(mesh, "victim").in_flight == 1, 10, "the subtask on the victim")
    worker.process.kill()
    worker.process.wait(10)
    wait_for(lambda: status_of(mesh, "victim") is None, 5, "the killed worker to be evicted")
    thread.join(20)
    # With no other worker for the capability, the re-queued subtask fails UNAVAILABLE.
    assert failure["error"].code_name == "UNAVAILABLE"


def test_a_frozen_node_worker_is_evicted_and_registers_again_when_told(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("frozen")
    wait_for(lambda: status_of(mesh, "frozen"), 30, "frozen to register")
    worker.process.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: status_of(mesh, "frozen") is None, 10, "the silent worker's eviction")
    finally:
        worker.process.send_signal(signal.SIGCONT)
    # Its next beat is answered HEARTBEAT_DIRECTIVE_REGISTER: it registers again.
    wait_for(lambda: status_of(mesh, "frozen"), 10, "frozen to register again")
    # The scheduler lists it as soon as it answers Register; the worker logs it just after.
    wait_for(
        lambda: worker.log().count('"message":"registered"') == 2, 5, "frozen's second register"
    )
    assert "registering again" in worker.log()
    dispatched = mesh.client.dispatch("detect_language", {"text": FRENCH})
    assert dispatched.worker_id == "frozen"


def test_the_node_workers_own_unit_tests() -> None:
    run = subprocess.run(
        ["node", "--test", "test/"], cwd=NODE_WORKER, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_node_worker_registers_with_a_restarted_scheduler(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-1")
    wait_for(lambda: status_of(mesh, "node-1"), 30, "node-1 to register")
    scheduler = mesh.processes["scheduler"]
    scheduler.terminate()
    scheduler.wait(15)
    mesh.start_scheduler()
    # Its stream failed with the old scheduler: it registers with the new one by itself.
    wait_for(lambda: status_of(mesh, "node-1"), 15, "node-1 to register again")
    # The scheduler lists it as soon as it answers Register; the worker logs it just after.
    wait_for(
        lambda: worker.log().count('"message":"registered"') >= 2, 5, "node-1's second register"
    )
    request = mesh.client.submit(language_plan(), {"text": FRENCH})
    assert request.answer["language"] == "fr"
