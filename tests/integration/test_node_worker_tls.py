"""The JavaScript worker (agents/node) in a mesh with mutual TLS: it joins under the id its
certificate names and serves the scheduler's calls, refuses work from any other
certificate, and without TLS serves loopback only, as the Python worker does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentmesh import tls
from agentmesh.v1 import scheduler_pb2, worker_pb2_grpc
from tests.integration import test_node_worker
from tests.integration.test_node_worker import (
    FRENCH,
    NODE_WORKER,
    NodeWorker,
    execute,
    language_plan,
    node_workers,
    status_of,
)
from tests.support.mesh import ROOT, Mesh, wait_for
from tests.support.tls import Certs, Identity

#: Skipped, as test_node_worker.py is, without Node.js and the worker's modules.
pytestmark = test_node_worker.pytestmark
SERVER_NAME = "nodew.worker.agentmesh.local"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


@pytest.fixture
def mesh(tmp_path: Path, certs: Certs) -> Iterator[Mesh]:
    """A scheduler with TLS on, alone: nothing offers detect_language until a Node worker."""
    mesh = Mesh(tmp_path, client_tls=certs.client().config(), **certs.scheduler().env)
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def node(mesh: Mesh) -> Iterator[Callable[..., NodeWorker]]:
    with node_workers(mesh) as start:
        yield start


def refusal(call: Callable[..., object], request: object) -> tuple[grpc.StatusCode, str]:
    """The code and ErrorInfo reason of a call that must fail."""
    try:
        call(request, timeout=10)
    except grpc.RpcError as error:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        reason = ""
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
        return error.code(), reason
    raise AssertionError("the call did not fail")


def refused_execute(
    address: str, identity: Identity | None, request_id: str
) -> tuple[grpc.StatusCode, str]:
    """The refusal of an Execute to the worker at `address` presenting `identity`."""
    config = identity.config() if identity else None
    with tls.channel(address, config, server_name=SERVER_NAME) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        return refusal(stub.Execute, execute(request_id, {"text": FRENCH}))


def test_a_node_worker_joins_a_tls_mesh_under_its_certificates_id_and_serves(
    mesh: Mesh, certs: Certs, node: Callable[..., NodeWorker]
) -> None:
    # No AGENTMESH_WORKER_ID: its id is the one its certificate names.
    worker = node("nodew", AGENTMESH_WORKER_ID="", **certs.worker("nodew").env)
    assert "agentmesh node worker nodew serving" in worker.log()
    wait_for(lambda: status_of(mesh, "nodew"), 30, "nodew to register over TLS")
    request = mesh.client.submit(
        language_plan(), {"text": FRENCH}, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    (subtask,) = request.subtasks
    assert subtask.worker_id == "nodew" and request.answer["language"] == "fr"
    dispatched = mesh.client.dispatch("detect_language", {"text": "Where is my parcel?"})
    assert dispatched.worker_id == "nodew" and dispatched.output["language"] == "en"


def test_a_node_worker_runs_execute_only_for_the_schedulers_certificate(
    mesh: Mesh, certs: Certs, node: Callable[..., NodeWorker]
) -> None:
    worker = node("nodew", **certs.worker("nodew").env)
    for n, caller in enumerate((certs.client(), certs.worker("other"))):
        code, reason = refused_execute(worker.address, caller, f"r{n}")
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_SCHEDULER")
    # No certificate, or one from another CA: the handshake fails before any handler.
    stranger = Certs(mesh.log_dir / "other-ca").scheduler()
    identity: Identity | None
    for identity in (None, stranger):
        code, _ = refused_execute(worker.address, identity, "r-none")
        assert code == grpc.StatusCode.UNAVAILABLE
    assert "call refused for its certificate" in worker.log()
    # The scheduler's certificate may: the refused calls ran nothing, this one runs.
    with tls.channel(worker.address, certs.scheduler().config(), server_name=SERVER_NAME) as ch:
        answer = worker_pb2_grpc.WorkerServiceStub(ch).Execute(
            execute("r0", {"text": FRENCH}), timeout=10
        )
    assert answer.output["language"] == "fr" and not answer.replayed


def start_refused(**env: str) -> subprocess.CompletedProcess[str]:
    """The Node worker started with `env` (and no other AGENTMESH_ setting), expected to stop."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    return subprocess.run(
        ["node", str(NODE_WORKER / "src" / "main.js")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_a_node_worker_with_tls_refuses_an_id_its_certificate_does_not_name(
    certs: Certs,
) -> None:
    run = start_refused(AGENTMESH_WORKER_ID="someone-else", **certs.worker("nodew").env)
    assert run.returncode == 2, run.stderr
    assert "AGENTMESH_WORKER_ID=someone-else" in run.stderr and "worker nodew" in run.stderr


def test_without_tls_a_node_worker_serves_loopback_only(mesh: Mesh) -> None:
    run = start_refused(AGENTMESH_WORKER_LISTEN="0.0.0.0:0")
    assert run.returncode == 2, run.stderr
    said = run.stderr
    assert said.count("\n") == 1 and "AGENTMESH_WORKER_LISTEN=0.0.0.0:0" in said, said
    assert "AGENTMESH_TLS_CERT" in said and "AGENTMESH_INSECURE=1" in said
    half = start_refused(AGENTMESH_TLS_CA=__file__, AGENTMESH_TLS_CERT=__file__)
    assert half.returncode == 2 and "set AGENTMESH_TLS_KEY" in half.stderr, half.stderr
    # AGENTMESH_INSECURE=1 is the explicit way to serve plaintext anyway.
    worker = NodeWorker(mesh, "plain", AGENTMESH_WORKER_LISTEN="0.0.0.0:0", AGENTMESH_INSECURE="1")
    try:
        assert worker.address.startswith("0.0.0.0:")
    finally:
        worker.stop()
