"""Certificates renewed on disk under the Node worker (agents/node) and the Node client
(clients/node), real processes and real certificates on loopback: nothing restarts, new
handshakes present the new certificates, and the Node worker serves on after its first
certificate expired; a half-written renewal keeps the previous certificate."""

from __future__ import annotations

import datetime
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentmesh.scheduler.certs import LOOPBACK, issue
from agentmesh.tls import client_name, worker_name
from agentmesh.v1 import scheduler_pb2
from tests.integration import test_node_worker
from tests.integration.test_node_client import node_test
from tests.integration.test_node_worker import (
    FRENCH,
    NodeWorker,
    language_plan,
    node_workers,
    status_of,
)
from tests.integration.test_tls_renewal import now, rewrite, serial
from tests.support.mesh import Mesh, wait_for
from tests.support.proxy import Proxy
from tests.support.tls import Certs, Identity, presented

#: Skipped, as test_node_worker.py is, without Node.js and the worker's modules.
pytestmark = [pytest.mark.integration, test_node_worker.pytestmark]

#: How long the Node worker's first certificate lives: it starts well within it.
FIRST_LIFE = datetime.timedelta(seconds=15)
WORKER = "nodew"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


@pytest.fixture
def mesh(tmp_path: Path, certs: Certs) -> Iterator[Mesh]:
    """A scheduler with TLS on, alone: nothing offers detect_language until a Node worker."""
    (tmp_path / "mesh").mkdir()
    mesh = Mesh(tmp_path / "mesh", client_tls=certs.client().config(), **certs.scheduler().env)
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def node(mesh: Mesh) -> Iterator[Callable[..., NodeWorker]]:
    with node_workers(mesh) as start:
        yield lambda **env: start(WORKER, **env)


def presented_serial(port: int, caller: Identity) -> int:
    serial_number: int = presented(port, caller).serial_number
    return serial_number


def free_port() -> int:
    """A loopback port free now (Node's server cannot share one, as SO_REUSEPORT would)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
        return port


def ran_on_the_node_worker(mesh: Mesh) -> None:
    request = mesh.client.submit(
        language_plan(), {"text": FRENCH}, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request
    (subtask,) = request.subtasks
    assert subtask.worker_id == WORKER and request.answer["language"] == "fr"


def test_a_node_worker_serves_on_past_the_expiry_of_its_first_certificate(
    tmp_path: Path, mesh: Mesh, certs: Certs, node: Callable[..., NodeWorker]
) -> None:
    to_scheduler, to_worker = Proxy(mesh.target), Proxy()
    try:
        expiry = now() + FIRST_LIFE
        names = [worker_name(WORKER, certs.domain), *LOOPBACK]
        first = issue(certs.ca, names, not_after=expiry)
        cert, key = first.write(tmp_path, WORKER)
        port = free_port()
        to_worker.target = f"127.0.0.1:{port}"
        worker = node(
            AGENTMESH_SCHEDULER=to_scheduler.address,
            AGENTMESH_WORKER_LISTEN=f"127.0.0.1:{port}",
            AGENTMESH_WORKER_ADVERTISE=to_worker.address,
            **Identity(certs.ca_path, cert, key).env,
        )
        wait_for(lambda: status_of(mesh, WORKER), 30, "the Node worker to register over TLS")
        ran_on_the_node_worker(mesh)
        caller = certs.client()
        assert now() < expiry, "the mesh took longer to start than the first certificate lives"
        assert presented_serial(port, caller) == serial(first)

        # Renewed in place long before the expiry, as cert-manager's CSI driver does.
        second = issue(certs.ca, names)
        rewrite(cert, key, second)
        wait_for(
            lambda: presented_serial(port, caller) == serial(second),
            10,
            "the Node worker to present its renewed certificate",
        )
        wait_for(lambda: now() > expiry, FIRST_LIFE.total_seconds() + 10, "the first to expire")
        ran_on_the_node_worker(mesh)  # over the scheduler's connection made before the expiry

        # The scheduler's connections to the worker end: its next call to the worker is a
        # new handshake, which the scheduler accepts only with the renewed certificate.
        before = to_worker.connections
        to_worker.cut()
        ran_on_the_node_worker(mesh)
        assert to_worker.connections > before

        # The worker's connections to the scheduler end: it registers again, which the
        # scheduler accepts only with the worker's renewed certificate.
        registered = worker.log().count('"registered"')
        to_scheduler.cut()
        wait_for(
            lambda: worker.log().count('"registered"') > registered and status_of(mesh, WORKER),
            30,
            "the Node worker to register again",
        )
        ran_on_the_node_worker(mesh)
        assert "cannot register" not in worker.log(), worker.log()
        assert worker.log().count("certificate files renewed") == 1, worker.log()
        assert worker.process.poll() is None  # the same process throughout
    finally:
        to_scheduler.close()
        to_worker.close()


def test_a_half_written_renewal_keeps_the_node_workers_previous_certificate(
    mesh: Mesh, certs: Certs, node: Callable[..., NodeWorker]
) -> None:
    identity = certs.worker(WORKER)
    port = free_port()
    worker = node(AGENTMESH_WORKER_LISTEN=f"127.0.0.1:{port}", **identity.env)
    wait_for(lambda: status_of(mesh, WORKER), 30, "the Node worker to register over TLS")
    caller = certs.client()
    old = presented_serial(port, caller)
    renewed = issue(certs.ca, [worker_name(WORKER, certs.domain), *LOOPBACK])
    identity.cert.write_bytes(renewed.cert_pem)  # the key is not written yet
    wait_for(
        lambda: "not a certificate with its key" in worker.log(), 10, "the half-written warning"
    )
    for _ in range(3):
        assert presented_serial(port, caller) == old
        ran_on_the_node_worker(mesh)
    identity.key.write_bytes(renewed.key_pem)
    wait_for(
        lambda: presented_serial(port, caller) == serial(renewed),
        10,
        "the renewed certificate, once its key is written",
    )
    ran_on_the_node_worker(mesh)
    assert worker.log().count("not a certificate with its key") == 1, worker.log()


def test_the_node_client_presents_its_renewed_certificate(tmp_path: Path, certs: Certs) -> None:
    folder = tmp_path / "node-renewal"
    folder.mkdir()
    (folder / "ca.pem").write_bytes(certs.ca_path.read_bytes())
    certs.scheduler()
    for name in ("scheduler.pem", "scheduler-key.pem"):
        (folder / name).write_bytes((certs.folder / name).read_bytes())
    for stem in ("client", "renewed"):
        issue(certs.ca, [client_name("node", certs.domain)], server=False).write(folder, stem)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    env = {**clean, "AGENTMESH_TEST_RENEWAL": str(folder)}
    returncode, output = node_test(env, tmp_path / "node-renewal.log", "test/renewal.test.js")
    assert returncode == 0, output
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output
    assert "# SKIP" not in output, output
    assert re.search(r"^ok \d+ - renewed certificates$", output, re.MULTILINE), output
