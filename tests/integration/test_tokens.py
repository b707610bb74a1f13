"""Callers' tokens against a real scheduler process: every bad token is UNAUTHENTICATED, a
client may not do an admin's calls, a tenant sees only its own requests, and the mesh keeps
serving after each refusal, which is counted by reason. Keys are made here."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.client import AsyncClient, Client
from agentmesh.errors import NotFound, Unauthenticated
from agentmesh.server.tokens import mint
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.integration.test_mesh import grpcurl
from tests.support.mesh import ROOT, Mesh, struct

pytestmark = pytest.mark.integration

AUD, ISS = "agentmesh-test", "https://issuer.agentmesh.test"
TICKET = {"text": "My order ORD-123456 never arrived. Please refund me."}


@dataclass
class Secured:
    mesh: Mesh
    key: rsa.RSAPrivateKey
    key_file: Path
    public_pem: bytes

    def token(self, role: str = "client", tenant: str = "acme", **claims: Any) -> str:
        if not claims:
            return mint(self.key, role=role, tenant=tenant, audience=AUD, issuer=ISS, ttl=600)
        body = {"role": role, "tenant": tenant, "aud": AUD, "iss": ISS}
        body |= {"exp": int(time.time()) + 600} | claims
        return jwt.encode(body, self.key, algorithm="RS256")

    def stub(self) -> scheduler_pb2_grpc.SchedulerServiceStub:
        return scheduler_pb2_grpc.SchedulerServiceStub(grpc.insecure_channel(self.mesh.target))

    def denials(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.mesh.metrics_port}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        found = re.findall(r'^agentmesh_auth_denied_total\{reason="([^"]+)"\} (\S+)', body, re.M)
        return {reason: float(value) for reason, value in found}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("tokens")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp / "token.pub").write_bytes(public_pem)
    key_file = tmp / "token.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    admin = mint(key, role="admin", tenant="", audience=AUD, issuer=ISS, ttl=3600)
    mesh = Mesh(
        tmp,
        token=admin,
        AGENTMESH_AUTH_PUBLIC_KEY=str(tmp / "token.pub"),
        AGENTMESH_AUTH_AUDIENCE=AUD,
        AGENTMESH_AUTH_ISSUER=ISS,
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker("w1")
        mesh.wait_workers({"w1"})
        yield Secured(mesh, key, key_file, public_pem)
    finally:
        mesh.stop()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(alg: str, secret: bytes | None) -> str:
    """A token signed by hand: HS256 over `secret`, or not at all (alg none)."""
    claims = {"role": "admin", "tenant": "x", "aud": AUD, "iss": ISS, "exp": time.time() + 600}
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{head}.{b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.digest(secret, signing_input.encode(), "sha256")
    return f"{signing_input}.{b64(signature)}"


def other_key_token() -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return mint(other, role="admin", tenant="", audience=AUD, issuer=ISS, ttl=600)


#: Each bad credential: how to make the authorization header, and the reason counted.
BAD: dict[str, tuple[Callable[[Secured], str | None], str]] = {
    "missing": (lambda s: None, "missing_token"),
    "not-bearer": (lambda s: f"Basic {s.token()}", "malformed_token"),
    "malformed": (lambda s: "Bearer not.a.jwt", "malformed_token"),
    "badly-signed": (lambda s: f"Bearer {other_key_token()}", "bad_signature"),
    "alg-none": (lambda s: f"Bearer {forged('none', None)}", "algorithm_refused"),
    "hs256-with-the-public-key": (
        lambda s: f"Bearer {forged('HS256', s.public_pem)}",
        "algorithm_refused",
    ),
    "expired": (lambda s: f"Bearer {s.token(exp=int(time.time()) - 3600)}", "token_expired"),
    "wrong-audience": (lambda s: f"Bearer {s.token(aud='someone-else')}", "wrong_audience"),
    "wrong-issuer": (lambda s: f"Bearer {s.token(iss='https://evil.test')}", "wrong_issuer"),
    "no-tenant": (
        lambda s: f"Bearer {s.token(tenant='', exp=int(time.time()) + 60)}",
        "bad_claims",
    ),
}


def still_serving(secured: Secured) -> None:
    """The mesh answers a good caller after a refusal."""
    assert {w.info.worker_id for w in secured.mesh.client.list_workers(timeout=10)} == {"w1"}
    with Client(secured.mesh.target, token=secured.token(), timeout=30) as client:
        plan = client.decompose("support_ticket", TICKET)
    assert plan.steps


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_token_is_unauthenticated_and_counted(secured: Secured, kind: str) -> None:
    make, reason = BAD[kind]
    header = make(secured)
    metadata = (("authorization", header),) if header is not None else None
    stub = secured.stub()
    before = secured.denials()
    calls: list[tuple[Any, Any]] = [
        (stub.Submit, scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(TICKET))),
        (stub.GetRequest, scheduler_pb2.GetRequestRequest(request_id="anything")),
        (stub.ListWorkers, scheduler_pb2.ListWorkersRequest()),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as refused:
            method(request, timeout=10, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, kind
        if header is not None:
            assert header.split()[-1] not in (refused.value.details() or "")
    after = secured.denials()
    assert after.get(reason, 0) - before.get(reason, 0) == len(calls), (reason, after)
    still_serving(secured)
    log = secured.mesh.log("scheduler")
    assert "call refused" in log
    if header is not None and len(header.split()[-1]) > 10:
        assert header.split()[-1] not in log


def test_a_client_may_not_list_workers_or_get_stats_and_an_admin_may(secured: Secured) -> None:
    stub = secured.stub()
    client = (("authorization", f"Bearer {secured.token()}"),)
    admin = (("authorization", f"Bearer {secured.token('admin', '')}"),)
    before = secured.denials().get("role_denied", 0)
    for method, request in (
        (stub.ListWorkers, scheduler_pb2.ListWorkersRequest()),
        (stub.GetStats, scheduler_pb2.GetStatsRequest()),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            method(request, timeout=10, metadata=client)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        method(request, timeout=10, metadata=admin)
    assert secured.denials().get("role_denied", 0) - before == 2
    still_serving(secured)


def test_a_tenant_sees_only_its_own_requests(secured: Secured) -> None:
    target = secured.mesh.target
    with (
        Client(target, token=secured.token(tenant="tenant-a"), timeout=60) as a,
        Client(target, token=secured.token(tenant="tenant-b"), timeout=60) as b,
    ):
        done = a.submit("support_ticket", TICKET, request_id="tenant-a-1")
        assert done.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
        assert a.get_request("tenant-a-1").request_id == "tenant-a-1"
        with pytest.raises(NotFound) as hidden:
            b.get_request("tenant-a-1")
        with pytest.raises(NotFound) as unknown:
            b.get_request("tenant-a-2")
        # Told exactly as for an id nobody used.
        assert hidden.value.message == unknown.value.message.replace("-2", "-1")
    # An admin sees every tenant's requests, naming the tenant (ids are each tenant's own).
    admin = secured.mesh.client
    assert admin.get_request("tenant-a-1", tenant="tenant-a").request_id == "tenant-a-1"
    with pytest.raises(NotFound):
        admin.get_request("tenant-a-1")  # the admin's own tenant (none) has no such id
    # And grpcurl, with the token as a header, is told the same (reflection is an admin's:
    # a client's grpcurl reads the .proto files).
    protos = ("-import-path", str(ROOT / "protos"), "-proto", "agentmesh/v1/scheduler.proto")
    token_b = secured.token(tenant="tenant-b")
    body = json.dumps({"request_id": "tenant-a-1"})
    method = "agentmesh.v1.SchedulerService/GetRequest"
    bearer_b = f"authorization: Bearer {token_b}"
    denied = grpcurl(*protos, "-H", bearer_b, target, method, data=body)
    assert denied.returncode != 0 and "NotFound" in denied.stderr, denied.stderr
    token_a = secured.token(tenant="tenant-a")
    shown = grpcurl(*protos, "-H", f"authorization: Bearer {token_a}", target, method, data=body)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["request"]["requestId"] == "tenant-a-1"


def test_stream_submit_without_a_token_is_denied_before_any_message(secured: Secured) -> None:
    request = scheduler_pb2.StreamSubmitRequest(
        request_id="stream-no-token", workflow="support_ticket", input=struct(TICKET)
    )
    before = secured.denials().get("missing_token", 0)
    received = []
    with pytest.raises(grpc.RpcError) as refused:
        for message in secured.stub().StreamSubmit(request, timeout=10):
            received.append(message)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert received == []
    assert secured.denials().get("missing_token", 0) - before == 1
    # Nothing was accepted under that id.
    with pytest.raises(NotFound):
        secured.mesh.client.get_request("stream-no-token")
    with Client(secured.mesh.target, token=secured.token(), timeout=60) as client:
        events = list(client.stream_submit("support_ticket", TICKET, request_id="stream-ok"))
    assert events[0].WhichOneof("event") == "plan"
    assert events[-1].result.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED


def test_reflection_is_an_admins_and_health_stays_open(secured: Secured) -> None:
    target = secured.mesh.target
    anonymous = grpcurl(target, "list")
    assert anonymous.returncode != 0 and "Unauthenticated" in anonymous.stderr, anonymous.stderr
    client = grpcurl("-H", f"authorization: Bearer {secured.token()}", target, "list")
    assert client.returncode != 0 and "PermissionDenied" in client.stderr, client.stderr
    admin = grpcurl("-H", f"authorization: Bearer {secured.token('admin', '')}", target, "list")
    assert admin.returncode == 0 and "agentmesh.v1.SchedulerService" in admin.stdout
    # Health itself is open: an admin's token for reflection alone, none for the call.
    admin_reflection = f"authorization: Bearer {secured.token('admin', '')}"
    health = grpcurl("-reflect-header", admin_reflection, target, "grpc.health.v1.Health/Check")
    assert health.returncode == 0 and "SERVING" in health.stdout, health.stderr
    probe = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
    answer = probe.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_mints_a_token_and_sends_it_from_a_flag_or_the_environment(
    secured: Secured,
) -> None:
    minted = cli(
        "token", "--role", "admin", "--key", str(secured.key_file), "--audience", AUD,
        "--issuer", ISS, "--ttl", "120",
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    admin = minted.stdout.strip()
    target = ("--target", secured.mesh.target)
    assert cli("workers", *target, AGENTMESH_TOKEN=admin).returncode == 0
    assert cli("workers", *target, "--token", admin).returncode == 0
    refused = cli("workers", *target)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, refused.stderr
    client = cli(
        "token", "--role", "client", "--tenant", "cli", "--key", str(secured.key_file),
        AGENTMESH_AUTH_AUDIENCE=AUD, AGENTMESH_AUTH_ISSUER=ISS,
    ).stdout.strip()  # fmt: skip
    submitted = cli("submit", *target, "--no-stream", "--view", "basic", "-", "--token", client)
    assert submitted.returncode == 1  # no input on stdin: refused by the scheduler, admitted
    assert "UNAUTHENTICATED" not in submitted.stderr, submitted.stderr
    plan = cli("plan", *target, str(ROOT / "examples/tickets/01_refund_broken_laptop_en.json"),
               AGENTMESH_TOKEN=client)  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    no_tenant = cli("token", "--role", "client", "--key", str(secured.key_file), "--audience",
                    AUD, "--issuer", ISS)  # fmt: skip
    assert no_tenant.returncode == 2 and "needs --tenant" in no_tenant.stderr


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"AGENTMESH_AUTH_AUDIENCE": AUD}, "without a key"),
        ({"AGENTMESH_AUTH_PUBLIC_KEY": "/nonexistent/key.pub"}, "AGENTMESH_AUTH_AUDIENCE"),
        (
            {
                "AGENTMESH_AUTH_PUBLIC_KEY": "/nonexistent/key.pub",
                "AGENTMESH_AUTH_AUDIENCE": AUD,
                "AGENTMESH_AUTH_ISSUER": ISS,
            },
            "cannot be read",
        ),
        ({"AGENTMESH_AUTH_LEEWAY": "soon"}, "AGENTMESH_AUTH_LEEWAY"),
    ],
)
def test_bad_auth_settings_stop_the_scheduler_with_one_line(env: dict[str, str], said: str) -> None:
    run = cli(
        "scheduler",
        AGENTMESH_LISTEN="127.0.0.1:0",
        AGENTMESH_METRICS_LISTEN="",
        AGENTMESH_STORE="",
        **env,
    )
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("agentmesh: ") and said in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1


def test_the_python_clients_send_the_token_given_or_agentmesh_token(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = secured.mesh.target
    monkeypatch.setenv("AGENTMESH_TOKEN", secured.token("admin", ""))
    with Client(target, timeout=10) as client:
        assert [w.info.worker_id for w in client.list_workers()] == ["w1"]
    with Client(target, timeout=10, token="") as client, pytest.raises(Unauthenticated):
        client.list_workers()

    async def asynchronous() -> list[str]:
        async with AsyncClient(target, timeout=10, token=secured.token("admin", "")) as client:
            return [w.info.worker_id for w in await client.list_workers()]

    monkeypatch.delenv("AGENTMESH_TOKEN")
    assert asyncio.run(asynchronous()) == ["w1"]
    with Client(target, timeout=10) as client, pytest.raises(Unauthenticated):
        client.list_workers()


@pytest.mark.parametrize("method", ["Submit", "GetRequest", "ListWorkers", "StreamSubmit"])
def test_credentials_are_checked_before_an_undecodable_message_is_refused(
    secured: Secured, method: str
) -> None:
    """A caller without credentials learns nothing from its message: not even its fault."""
    channel = grpc.insecure_channel(secured.mesh.target)
    path = f"/agentmesh.v1.SchedulerService/{method}"
    garbage = b"\x0a\x03\xff\xfe\xfd"  # field 1, a string in every request, not UTF-8
    admin = (("authorization", f"Bearer {secured.token('admin', '')}"),)
    for metadata, expected in ((None, "UNAUTHENTICATED"), (admin, "INVALID_ARGUMENT")):
        with pytest.raises(grpc.RpcError) as refused:
            if method == "StreamSubmit":
                list(channel.unary_stream(path)(garbage, timeout=10, metadata=metadata))
            else:
                channel.unary_unary(path)(garbage, timeout=10, metadata=metadata)
        assert refused.value.code().name == expected, (method, refused.value.details())
    channel.close()
