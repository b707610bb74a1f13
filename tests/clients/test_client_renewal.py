"""The Python clients follow their certificate files: after a renewal, their next call
presents the new certificate, as the scheduler sees it, with no new client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from agentmesh.client import AsyncClient, Client
from agentmesh.scheduler.certs import issue
from agentmesh.server.tls import server_credentials
from agentmesh.tls import client_name
from agentmesh.v1 import scheduler_pb2
from tests.support.tls import Certs, Identity

Server = tuple[int, list[bytes]]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


@pytest.fixture
async def scheduler(certs: Certs) -> AsyncIterator[Server]:
    """A TLS server of ListWorkers alone, which notes the certificate of each caller."""
    seen: list[bytes] = []

    async def list_workers(
        request: scheduler_pb2.ListWorkersRequest, context: aio.ServicerContext[Any, Any]
    ) -> scheduler_pb2.ListWorkersResponse:
        seen.append(context.auth_context()["x509_pem_cert"][0])
        return scheduler_pb2.ListWorkersResponse()

    method = grpc.unary_unary_rpc_method_handler(
        list_workers,
        request_deserializer=scheduler_pb2.ListWorkersRequest.FromString,
        response_serializer=scheduler_pb2.ListWorkersResponse.SerializeToString,
    )
    server = aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "agentmesh.v1.SchedulerService", {"ListWorkers": method}
            )
        ]
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(certs.scheduler().config()))
    await server.start()
    yield port, seen
    await server.stop(None)


async def presents_renewal(
    certs: Certs, identity: Identity, seen: list[bytes], call: Callable[[], Awaitable[Any]]
) -> None:
    """`call` presents the client's certificate, then, once its files are renewed, the new
    one (within a bounded number of calls: the client looks at most once a second)."""
    await call()
    assert seen[-1] == identity.cert.read_bytes()
    renewed = issue(certs.ca, [client_name("tests", certs.domain)], server=False)
    identity.cert.write_bytes(renewed.cert_pem)
    identity.key.write_bytes(renewed.key_pem)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while seen[-1] != renewed.cert_pem:
        assert loop.time() < deadline, "the client never presented its renewed certificate"
        await asyncio.sleep(0.05)
        await call()


async def test_the_blocking_client_presents_its_renewed_certificate(
    certs: Certs, scheduler: Server
) -> None:
    port, seen = scheduler
    loop = asyncio.get_running_loop()
    identity = certs.client()
    with Client(f"127.0.0.1:{port}", timeout=10, tls=identity.config()) as client:
        await presents_renewal(
            certs, identity, seen, lambda: loop.run_in_executor(None, client.list_workers)
        )


async def test_the_asyncio_client_presents_its_renewed_certificate(
    certs: Certs, scheduler: Server
) -> None:
    port, seen = scheduler
    identity = certs.client()
    async with AsyncClient(f"127.0.0.1:{port}", timeout=10, tls=identity.config()) as client:
        await presents_renewal(certs, identity, seen, client.list_workers)
