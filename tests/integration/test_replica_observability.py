"""What an operator sees of replicas and tenants, against real processes.

Two schedulers on a private PostgreSQL database with callers' tokens: both
tenants' "ticket-124" run on s1, which is stopped past its lease. s2 takes
both over and counts them on its /metrics, s1 comes back, finds its late
writes refused and counts both lost; every log line about them (JSON) names
the tenant, and GetStats lists the id twice, once per tenant. And the CLI's
`agentmesh get --tenant` reads another tenant's request for an admin, over
mutual TLS.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, wait_for
from tests.support.replicas import ReplicaMesh
from tests.support.tls import Certs, secured_mesh, token, token_settings

pytestmark = pytest.mark.integration

ID = "ticket-124"
TICKETS = {
    "tenant-a": {"text": "My order ORD-111111 never arrived. Please refund me."},
    "tenant-b": {"text": "Votre facture FAC-222222 est fausse, merci de la corriger."},
}
TAKEN_OVER = 'agentmesh_requests_taken_over_total{lease="expired"}'
FENCED = "agentmesh_requests_fenced_total"


def json_lines(text: str, message: str) -> list[dict[str, Any]]:
    """The JSON log lines of a process's log that start with `message`."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"].startswith(message)]


def named(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((line["request_id"], line.get("tenant", "")) for line in lines)


def test_takeovers_and_losses_are_counted_and_logged_with_their_tenants(
    tmp_path: Path, postgres_url: str
) -> None:
    mesh = ReplicaMesh(
        tmp_path, postgres_url, lease=1.5, token=token("admin", ""), **token_settings(tmp_path)
    )
    keys = {f"{t}/{ID}" for t in TICKETS}
    try:
        mesh.start_replicas(2)
        slow = {"AGENTMESH_SIM_LATENCY": "0.6", "AGENTMESH_SIM_SIGMA": "0"}
        for name in ("a", "b"):
            mesh.start_worker(name, backend="sim", **slow)
        mesh.wait_workers({"a", "b"})
        before = {r: (mesh.metric(r, TAKEN_OVER), mesh.metric(r, FENCED)) for r in ("s1", "s2")}

        def submit(tenant: str) -> None:
            address = mesh.replicas["s1"]
            with Client(address, timeout=60, token=token("client", tenant)) as client:
                try:
                    client.submit("support_ticket", TICKETS[tenant], request_id=ID)
                except AgentmeshError:
                    pass

        for tenant in TICKETS:
            threading.Thread(target=submit, args=(tenant,), daemon=True).start()

        wait_for(
            lambda: mesh.under_way(ID, TICKETS, on="s1", reader="s2"),
            30,
            "both tenants' requests under way on s1",
        )
        mesh.signal("s1", signal.SIGSTOP)
        wait_for(
            lambda: all(mesh.owners()[k][:2] == ("s2", 2) for k in keys), 30, "s2 to take over"
        )
        taken_over = wait_for(
            lambda: mesh.metric("s2", TAKEN_OVER) == 2 and 2, 10, "s2 to count its takeovers"
        )
        for t in TICKETS:
            wait_for(lambda t=t: _finished(mesh, t), 60, f"s2 to finish {t}'s request")
        mesh.signal("s1", signal.SIGCONT)
        fenced = wait_for(
            lambda: mesh.metric("s1", FENCED) == 2 and 2, 30, "s1 to count both requests lost"
        )
        after = {r: (mesh.metric(r, TAKEN_OVER), mesh.metric(r, FENCED)) for r in ("s1", "s2")}
        recent = mesh.clients["s2"].get_stats(10).recent
        took = json_lines(mesh.log("s2"), "taking over a request")
        lost = json_lines(mesh.log("s1"), "request taken over by another scheduler")
    finally:
        mesh.stop()

    assert before == {"s1": (0, 0), "s2": (0, 0)}  # exported from the start, at 0
    assert after == {"s1": (0, 2), "s2": (2, 0)}  # s1 took nothing over; s2 lost nothing
    both = [(ID, t) for t in sorted(TICKETS)]
    assert named(took) == both and {line["epoch"] for line in took} == {2}
    assert named(lost) == both and {line["replica"] for line in lost} == {"s1"}
    assert sorted((r.request_id, r.tenant) for r in recent if r.request_id == ID) == both
    print(
        f"\nreplica stopped past its lease: taken over {taken_over} (s2), fenced {fenced} (s1); "
        f"log lines naming a tenant: {len(took)} takeover, {len(lost)} lost"
    )


def _finished(mesh: ReplicaMesh, tenant: str) -> bool:
    try:
        request = mesh.clients["s2"].get_request(ID, tenant=tenant, timeout=2)
    except AgentmeshError:
        return False
    return request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED


def agentmesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_the_cli_reads_another_tenants_request_for_an_admin(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    client_cert = certs.client()
    with secured_mesh(tmp_path, certs) as mesh:
        answers = {}
        for tenant, ticket in TICKETS.items():
            with Client(
                mesh.target, timeout=60, token=token("client", tenant), tls=client_cert.config()
            ) as client:
                answers[tenant] = client.submit("support_ticket", ticket, request_id=ID)

        def get(role: str, tenant: str, *args: str) -> subprocess.CompletedProcess[str]:
            return agentmesh(
                "get",
                ID,
                *args,
                "--target",
                mesh.target,
                "--token",
                token(role, tenant),
                "--tls-ca",
                str(client_cert.ca),
                "--tls-cert",
                str(client_cert.cert),
                "--tls-key",
                str(client_cert.key),
            )

        shown = {t: get("admin", "", "--tenant", t) for t in TICKETS}
        basic = get("admin", "", "--tenant", "tenant-a", "--view", "basic")
        own_tenant = get("admin", "")  # an admin of no tenant has no request of that id
        other = get("client", "tenant-a", "--tenant", "tenant-b")
        own = get("client", "tenant-a")

    for t, run in shown.items():
        assert run.returncode == 0, run.stderr
        request = json.loads(run.stdout)
        assert request["request_id"] == ID and request["state"] == "REQUEST_STATE_SUCCEEDED"
        assert request["answer"] == json_format.MessageToDict(answers[t].answer)
        assert request["subtasks"]  # the full view by default
    assert shown["tenant-a"].stdout != shown["tenant-b"].stdout
    assert basic.returncode == 0 and "subtasks" not in json.loads(basic.stdout)
    assert own_tenant.returncode == 1 and "NOT_FOUND" in own_tenant.stderr
    assert other.returncode == 1 and "PERMISSION_DENIED" in other.stderr
    assert own.returncode == 0 and json.loads(own.stdout) == json.loads(shown["tenant-a"].stdout)
