"""A mesh with both halves of its security on: mutual TLS and callers' tokens. The
certificate says a caller belongs to the mesh, the token what it may do."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from agentmesh import tls
from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.integration.test_tls import grpcurl
from tests.support.mesh import Mesh, refused, struct
from tests.support.tls import Certs, secured_mesh, token

pytestmark = pytest.mark.integration

TICKET = {"text": "My order ORD-123456 never arrived. Please refund me."}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Mesh]:
    with secured_mesh(tmp_path_factory.mktemp("tls-tokens"), certs) as mesh:
        yield mesh


def test_a_client_with_its_certificate_and_token_submits(mesh: Mesh, certs: Certs) -> None:
    settings = certs.client().config()
    with Client(mesh.target, timeout=30, token=token("client"), tls=settings) as client:
        request = client.submit("support_ticket", TICKET)
        assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
        # ListWorkers is an admin's: the certificate does not make the client one.
        with pytest.raises(AgentmeshError) as caught:
            client.list_workers()
        assert caught.value.code_name == "PERMISSION_DENIED"


def test_grpcurl_with_a_certificate_and_a_bearer_token(mesh: Mesh, certs: Certs) -> None:
    client = certs.client("grpcurl")
    bearer = f"authorization: Bearer {token('admin', '')}"
    listed = grpcurl(*client.grpcurl_args(), "-H", bearer, mesh.target, "list")
    assert listed.returncode == 0, listed.stderr
    assert "agentmesh.v1.SchedulerService" in listed.stdout
    no_token = grpcurl(*client.grpcurl_args(), mesh.target, "list")
    assert no_token.returncode != 0 and "Unauthenticated" in no_token.stderr


def test_a_certificate_without_a_token_is_unauthenticated(mesh: Mesh, certs: Certs) -> None:
    with tls.channel(mesh.target, certs.client().config()) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        submit = scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(TICKET))
        assert refused(stub.Submit, submit, 10)[0] == grpc.StatusCode.UNAUTHENTICATED


def test_a_worker_certificate_with_an_admin_token_may_not_submit(mesh: Mesh, certs: Certs) -> None:
    metadata = [("authorization", f"Bearer {token('admin', '')}")]
    worker = certs.worker("w1").config()
    with tls.channel(mesh.target, worker, server_name="scheduler.agentmesh.local") as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        submit = scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(TICKET))
        try:
            stub.Submit(submit, timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "may not call this method" in (error.details() or "")
        else:
            raise AssertionError("a worker's certificate submitted a request")
    assert mesh.client.list_workers()
