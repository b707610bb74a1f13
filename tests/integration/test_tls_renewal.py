"""Certificates renewed on disk under a running TLS mesh (real processes on loopback), as
cert-manager renews them: the scheduler's through a projected Secret (a symlink swapped),
a worker's rewritten in place (the CSI driver). Nothing restarts; new handshakes present
the new certificates, and the mesh serves on after the first ones expire."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh import tls
from agentmesh.client import Client
from agentmesh.scheduler.certs import LOOPBACK, Issued, issue
from agentmesh.tls import scheduler_name, worker_name
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from tests.support.mesh import Mesh, refused, wait_for
from tests.support.proxy import Proxy
from tests.support.tls import Certs, Identity, presented

pytestmark = pytest.mark.integration

TICKET = {"text": "My order ORD-123456 arrived broken. I want my money back!"}
#: How long the first certificates live: the mesh starts well within it.
FIRST_LIFE = datetime.timedelta(seconds=20)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class SecretVolume:
    """A projected Secret's files: tls.crt and tls.key link into `..data`, a link to a
    folder of the current version, swapped at once for a new version."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.versions = 0
        for name in ("tls.crt", "tls.key"):
            (folder / name).symlink_to(f"..data/{name}")

    def write(self, issued: Issued) -> None:
        self.versions += 1
        version = self.folder / f"..version_{self.versions}"
        version.mkdir()
        (version / "tls.crt").write_bytes(issued.cert_pem)
        (version / "tls.key").write_bytes(issued.key_pem)
        (self.folder / "..data_tmp").symlink_to(version.name)
        os.replace(self.folder / "..data_tmp", self.folder / "..data")

    def env(self, ca: Path) -> dict[str, str]:
        return {
            "AGENTMESH_TLS_CA": str(ca),
            "AGENTMESH_TLS_CERT": str(self.folder / "tls.crt"),
            "AGENTMESH_TLS_KEY": str(self.folder / "tls.key"),
        }


def rewrite(cert: Path, key: Path, issued: Issued) -> None:
    """Rewrite a worker's files in place, the certificate first, as the CSI driver does."""
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)


def serial(issued: Issued) -> int:
    return issued.cert.serial_number


def submitted(client: Client) -> scheduler_pb2.Request:
    request = client.submit("support_ticket", TICKET)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request
    return request


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path / "certs")


@pytest.fixture
def proxies() -> Iterator[tuple[Proxy, Proxy]]:
    """Between worker w1 and the scheduler, one each way, so that a test can cut the
    scheduler's connections to the worker and the worker's to the scheduler apart."""
    to_scheduler, to_worker = Proxy(), Proxy()
    yield to_scheduler, to_worker
    to_scheduler.close()
    to_worker.close()


def test_a_mesh_serves_on_past_the_expiry_of_its_first_certificates(
    tmp_path: Path, certs: Certs, proxies: tuple[Proxy, Proxy]
) -> None:
    to_scheduler, to_worker = proxies
    expiry = now() + FIRST_LIFE
    domain = certs.domain
    first_scheduler = issue(certs.ca, [scheduler_name(domain), *LOOPBACK], not_after=expiry)
    first_worker = issue(certs.ca, [worker_name("w1", domain), *LOOPBACK], not_after=expiry)
    volume = SecretVolume(tmp_path / "scheduler-tls")
    volume.write(first_scheduler)
    worker_cert, worker_key = first_worker.write(tmp_path, "w1")
    caller = certs.client()
    (tmp_path / "mesh").mkdir()
    mesh = Mesh(tmp_path / "mesh", client_tls=caller.config(), **volume.env(certs.ca_path))
    try:
        mesh.start_scheduler()
        to_scheduler.target = mesh.target
        mesh.start_worker(
            "w1",
            AGENTMESH_SCHEDULER=to_scheduler.address,
            AGENTMESH_WORKER_ADVERTISE=to_worker.address,
            **Identity(certs.ca_path, worker_cert, worker_key).env,
        )
        worker_port = int(mesh.ports("w1").grpc.rpartition(":")[2])
        to_worker.target = f"127.0.0.1:{worker_port}"
        mesh.wait_workers({"w1"})
        submitted(mesh.client)
        assert now() < expiry, "the mesh took longer to start than its first certificates live"
        assert presented(mesh.port, caller).serial_number == serial(first_scheduler)
        assert presented(worker_port, caller).serial_number == serial(first_worker)

        # Renewed long before the expiry, as cert-manager does.
        second_scheduler = issue(certs.ca, [scheduler_name(domain), *LOOPBACK])
        second_worker = issue(certs.ca, [worker_name("w1", domain), *LOOPBACK])
        volume.write(second_scheduler)
        rewrite(worker_cert, worker_key, second_worker)
        assert presented(mesh.port, caller).serial_number == serial(second_scheduler)
        assert presented(worker_port, caller).serial_number == serial(second_worker)

        wait_for(lambda: now() > expiry, FIRST_LIFE.total_seconds() + 10, "the first to expire")
        # Expired indeed: the scheduler refuses the worker's first certificate now.
        first_worker.write(tmp_path, "w1-first")
        first = Identity(certs.ca_path, tmp_path / "w1-first.pem", tmp_path / "w1-first-key.pem")
        with tls.channel(mesh.target, first.config(), server_name=scheduler_name(domain)) as ch:
            code, _, _ = refused(
                scheduler_pb2_grpc.SchedulerServiceStub(ch).Register,
                scheduler_pb2.RegisterRequest(worker=worker_pb2.WorkerInfo(worker_id="w1")),
                10,
            )
        assert code == grpc.StatusCode.UNAVAILABLE

        submitted(mesh.client)  # over the connection made before the expiry
        with Client(mesh.target, timeout=30, tls=caller.config()) as fresh:
            submitted(fresh)  # over a new one: the scheduler's new certificate

        # The scheduler's connections to the worker end: its next stream to w1 is a new
        # handshake, which the worker accepts only with the scheduler's new certificate.
        before = to_worker.connections
        to_worker.cut()
        request = submitted(mesh.client)
        assert to_worker.connections > before
        subtasks = mesh.client.get_request(request.request_id).subtasks
        assert {s.worker_id for s in subtasks if s.worker_id} == {"w1"}

        # The worker's connections to the scheduler end: it registers again, which the
        # scheduler accepts only with the worker's new certificate.
        registered = mesh.log("w1").count("registered")
        to_scheduler.cut()
        wait_for(
            lambda: mesh.log("w1").count("registered") > registered and "w1" in mesh.worker_ids(),
            30,
            "w1 to register again",
        )
        submitted(mesh.client)
        assert "cannot register" not in mesh.log("w1")
    finally:
        mesh.stop()


def test_a_half_written_renewal_keeps_the_scheduler_serving_its_previous_certificate(
    tmp_path: Path, certs: Certs
) -> None:
    identity = certs.scheduler()
    first = identity.cert.read_bytes()
    caller = certs.client()
    (tmp_path / "mesh").mkdir()
    mesh = Mesh(tmp_path / "mesh", client_tls=caller.config(), **identity.env)
    try:
        mesh.start_scheduler()
        old = presented(mesh.port, caller).serial_number
        renewed = issue(certs.ca, [scheduler_name(certs.domain), *LOOPBACK])
        identity.cert.write_bytes(renewed.cert_pem)  # the key is not written yet
        for _ in range(3):
            assert presented(mesh.port, caller).serial_number == old
            with Client(mesh.target, timeout=30, tls=caller.config()) as fresh:
                fresh.list_workers()  # a whole call over a new connection
        assert mesh.log("scheduler").count("not a certificate with its key") == 1
        assert identity.cert.read_bytes() != first
        identity.key.write_bytes(renewed.key_pem)
        assert presented(mesh.port, caller).serial_number == serial(renewed)
        with Client(mesh.target, timeout=30, tls=caller.config()) as fresh:
            fresh.list_workers()
    finally:
        mesh.stop()
