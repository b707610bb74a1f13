"""`agentmesh health`, the probe of a pod whose server requires a client certificate: run
as Kubernetes runs it (a process in the pod, with the pod's own certificate), against a
real scheduler and worker with mutual TLS whose certificates name no loopback address,
as the cluster's do (deploy/kubernetes/components/tls)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmesh.scheduler.certs import issue
from agentmesh.tls import scheduler_name, worker_name
from tests.support.mesh import Mesh
from tests.support.tls import Certs, Identity

pytestmark = pytest.mark.integration

DOMAIN = "agentmesh.local"


def identity(certs: Certs, stem: str, *names: str) -> Identity:
    """A certificate of the mesh's CA for these DNS names alone."""
    cert, key = issue(certs.ca, list(names)).write(certs.folder, stem)
    return Identity(certs.ca_path, cert, key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"), DOMAIN)


@pytest.fixture(scope="module")
def scheduler_tls(certs: Certs) -> Identity:
    return identity(certs, "scheduler-pod", scheduler_name(DOMAIN), "agentmesh-scheduler")


@pytest.fixture(scope="module")
def worker_tls(certs: Certs) -> Identity:
    return identity(certs, "worker-pod", worker_name("pool-7c9d-x2k4p", DOMAIN))


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory,
    certs: Certs,
    scheduler_tls: Identity,
    worker_tls: Identity,
) -> Iterator[Mesh]:
    client = certs.client().config(server_name=scheduler_name(DOMAIN))
    mesh = Mesh(tmp_path_factory.mktemp("health"), client_tls=client, **scheduler_tls.env)
    try:
        mesh.start_scheduler()
        mesh.start_worker("pool-7c9d-x2k4p", **worker_tls.env)
        mesh.wait_workers({"pool-7c9d-x2k4p"})
        yield mesh
    finally:
        mesh.stop()


def probe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`agentmesh health ARGS` in a process of its own, as an exec probe runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "agentmesh"), "health", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_scheduler_s_probe_with_its_own_certificate(
    mesh: Mesh, scheduler_tls: Identity
) -> None:
    given = ["--target", mesh.target, "--tls-server-name", scheduler_name(DOMAIN)]
    done = probe(*given, **scheduler_tls.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SERVING\n"


def test_the_worker_s_probe_names_the_worker_by_its_id(mesh: Mesh, worker_tls: Identity) -> None:
    target = mesh.ports("pool-7c9d-x2k4p").grpc
    env = {**worker_tls.env, "AGENTMESH_WORKER_ID": "pool-7c9d-x2k4p"}
    done = probe("--target", target, "--worker", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "SERVING\n"
    # Another worker's name is not this server's: the handshake fails.
    other = probe("--target", target, "--worker", "pool-7c9d-zzzzz", **env)
    assert other.returncode == 1
    assert other.stderr.startswith("agentmesh: UNAVAILABLE")


def test_without_a_certificate_or_with_the_wrong_name_the_probe_fails(
    mesh: Mesh, scheduler_tls: Identity
) -> None:
    # Plaintext to a TLS port, as Kubernetes' own grpc probe would be.
    plain = probe("--target", mesh.target)
    assert plain.returncode == 1 and plain.stderr.startswith("agentmesh: UNAVAILABLE")
    # The address dialled is not a name of the scheduler's certificate.
    unnamed = probe("--target", mesh.target, **scheduler_tls.env)
    assert unnamed.returncode == 1 and "UNAVAILABLE" in unnamed.stderr


def test_a_service_the_server_does_not_know_fails_the_probe(
    mesh: Mesh, scheduler_tls: Identity
) -> None:
    given = ["--target", mesh.target, "--tls-server-name", scheduler_name(DOMAIN)]
    done = probe(*given, "--service", "no.such.Service", **scheduler_tls.env)
    assert done.returncode == 1
    assert "NOT_FOUND" in done.stderr


def test_a_bad_worker_id_is_a_usage_error(scheduler_tls: Identity) -> None:
    done = probe("--target", "127.0.0.1:1", "--worker", "Not_A_Label", **scheduler_tls.env)
    assert done.returncode == 2
    assert done.stderr.startswith("agentmesh health: --worker 'Not_A_Label'")
