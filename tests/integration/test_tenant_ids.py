"""Each tenant has its own space of request ids, against a real scheduler with mutual TLS
and callers' tokens, on either store: two tenants' "ticket-124" are two requests, each
tenant's repeat, stream and GetRequest see its own, also after a restart; an admin names
the tenant whose request it reads; a replica's takeover keeps them apart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError, NotFound, PermissionDenied
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import Mesh, wait_for
from tests.support.replicas import ReplicaMesh
from tests.support.tls import Certs, secured_mesh, token, token_settings

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


def test_a_takeover_resumes_two_tenants_requests_of_one_id_each_as_its_own(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two schedulers on PostgreSQL with tokens checked (no TLS: loopback); both tenants'
    ticket-124 run on s1, which is killed mid-request: s2 takes each over as its own."""
    mesh = ReplicaMesh(
        tmp_path, postgres_url, lease=1.5, token=token("admin", ""), **token_settings(tmp_path)
    )
    answers: dict[str, scheduler_pb2.Request] = {}
    try:
        mesh.start_replicas(2)
        slow = {"AGENTMESH_SIM_LATENCY": "0.6", "AGENTMESH_SIM_SIGMA": "0"}
        for name in ("a", "b"):
            mesh.start_worker(name, backend="sim", **slow)
        mesh.wait_workers({"a", "b"})

        def submit(tenant: str) -> None:
            # A caller whose scheduler dies asks the other, under the same request id.
            for replica in ("s1", "s2"):
                address = mesh.replicas[replica]
                with Client(address, timeout=60, token=token("client", tenant)) as client:
                    try:
                        answers[tenant] = client.submit(
                            "support_ticket", TICKETS[tenant], request_id=ID
                        )
                        return
                    except AgentmeshError:
                        continue

        callers = [threading.Thread(target=submit, args=(t,), daemon=True) for t in TICKETS]
        for caller in callers:
            caller.start()
        keys = {f"{t}/{ID}" for t in TICKETS}
        wait_for(
            lambda: mesh.under_way(ID, TICKETS, on="s1", reader="s2"),
            30,
            "both tenants' requests under way on s1",
        )
        mesh.kill("s1")
        for caller in callers:
            caller.join(90)
        owners = mesh.owners()
        shown = {t: mesh.clients["s2"].get_request(ID, tenant=t) for t in TICKETS}
    finally:
        mesh.stop()

    assert sorted(answers) == sorted(TICKETS)  # each caller got its answer
    for t, answer in answers.items():
        assert answer.request_id == ID
        assert answer.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, (t, answer.error)
        assert shown[t].answer == answer.answer
    assert answers["tenant-a"].answer != answers["tenant-b"].answer
    assert {k: owners[k][:2] for k in keys} == dict.fromkeys(keys, ("s2", 2))  # taken over
