"""Each tenant has its own space of request ids, against a real scheduler with mutual TLS
and callers' tokens, on either store: two tenants' "ticket-124" are two requests, each
tenant's repeat, stream and GetRequest see its own, also after a restart; an admin names
the tenant whose request it reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmesh.client import Client
from agentmesh.errors import NotFound, PermissionDenied
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import Mesh
from tests.support.tls import Certs, secured_mesh, token

pytestmark = pytest.mark.integration

ID = "ticket-124"
#: Two tenants' tickets: what each is answered tells them apart.
TICKETS = {
    "tenant-a": {"text": "My order ORD-111111 never arrived. Please refund me."},
    "tenant-b": {"text": "Votre facture FAC-222222 est fausse, merci de la corriger."},
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path, certs: Certs) -> Iterator[Mesh]:
    env = {}
    if request.param == "postgresql":
        env["AGENTMESH_STORE"] = request.getfixturevalue("postgres_url")
    with secured_mesh(tmp_path, certs, **env) as mesh:
        yield mesh


def clients(mesh: Mesh, certs: Certs) -> dict[str, Client]:
    settings = certs.client().config()
    return {
        tenant: Client(mesh.target, timeout=60, token=token("client", tenant), tls=settings)
        for tenant in TICKETS
    }


def test_two_tenants_with_the_same_request_id_each_get_their_own(mesh: Mesh, certs: Certs) -> None:
    tenants = clients(mesh, certs)
    try:
        # B first: before, A's Submit of the same id was then NOT_FOUND.
        first = {
            t: tenants[t].submit("support_ticket", TICKETS[t], request_id=ID)
            for t in ("tenant-b", "tenant-a")
        }
        for t, request in first.items():
            assert request.request_id == ID
            assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, (t, request.error)
        assert first["tenant-a"].answer != first["tenant-b"].answer

        def own(t: str, request: scheduler_pb2.Request) -> None:
            assert request.request_id == ID
            assert request.answer == first[t].answer
            assert request.created_at == first[t].created_at  # the same request, not a new run

        for t, client in tenants.items():
            own(t, client.submit("support_ticket", TICKETS[t], request_id=ID))
            events = list(client.stream_submit("support_ticket", TICKETS[t], request_id=ID))
            assert {e.request_id for e in events} == {ID}
            own(t, events[-1].result)
            own(t, client.get_request(ID))

        # An admin reads the tenant it names; its own tenant (none) has no such request.
        admin = mesh.client
        for t in TICKETS:
            own(t, admin.get_request(ID, tenant=t))
        with pytest.raises(NotFound):
            admin.get_request(ID)
        # A client names its own tenant only.
        own("tenant-a", tenants["tenant-a"].get_request(ID, tenant="tenant-a"))
        with pytest.raises(PermissionDenied) as denied:
            tenants["tenant-a"].get_request(ID, tenant="tenant-b")
        assert denied.value.reason == "TENANT_DENIED"
    finally:
        for client in tenants.values():
            client.close()

    # The store keeps them apart across a restart (nothing in memory then).
    mesh.kill("scheduler")
    mesh.start_scheduler()
    tenants = clients(mesh, certs)
    try:
        for t, client in tenants.items():
            own(t, client.get_request(ID))
            own(t, client.submit("support_ticket", TICKETS[t], request_id=ID))
    finally:
        for client in tenants.values():
            client.close()
