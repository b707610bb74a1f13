"""`agentmesh certs DIR`: the files it writes make a working TLS mesh, in any domain."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agentmesh.server.tls import certificate_names
from agentmesh.tls import TlsConfig
from agentmesh.v1 import scheduler_pb2
from tests.integration.test_run import printed_commands
from tests.support.mesh import ANY_PORT, ROOT, Mesh, agentmesh_run

pytestmark = pytest.mark.integration


def certs(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "certs", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def files(folder: Path, stem: str) -> dict[str, str]:
    return {
        "AGENTMESH_TLS_CA": str(folder / "ca.pem"),
        "AGENTMESH_TLS_CERT": str(folder / f"{stem}.pem"),
        "AGENTMESH_TLS_KEY": str(folder / f"{stem}-key.pem"),
    }


def test_certs_writes_a_ca_and_a_certificate_for_each_part(tmp_path: Path) -> None:
    made = certs(tmp_path / "certs", "--workers", "2", "--domain", "mesh.test", "--host", "sched")
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "certs"
    stems = ["ca", "scheduler", "worker-1", "worker-2", "client"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{s}.pem" for s in stems] + [f"{s}-key.pem" for s in stems]
    )
    for stem in stems:
        assert stat.S_IMODE((folder / f"{stem}-key.pem").stat().st_mode) == 0o600
    assert set(certificate_names(str(folder / "scheduler.pem"))) == {
        "scheduler.mesh.test",
        "localhost",
        "sched",
    }
    assert "worker-2.worker.mesh.test" in certificate_names(str(folder / "worker-2.pem"))
    assert certificate_names(str(folder / "client.pem")) == ("cli.client.mesh.test",)


def test_a_mesh_runs_on_the_certificates_it_writes(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    assert certs(folder, "--workers", "1", "--domain", "mesh.test").returncode == 0
    domain = {"AGENTMESH_TLS_DOMAIN": "mesh.test"}
    client = TlsConfig(
        **{
            "ca": str(folder / "ca.pem"),
            "cert": str(folder / "client.pem"),
            "key": str(folder / "client-key.pem"),
        }
    )
    mesh = Mesh(tmp_path, client_tls=client, **files(folder, "scheduler"), **domain)
    try:
        mesh.start_scheduler()
        # No AGENTMESH_WORKER_ID: the worker goes by the id its certificate names.
        mesh.start_worker("w", AGENTMESH_WORKER_ID="", **files(folder, "worker-1"), **domain)
        mesh.wait_workers({"worker-1"})
        request = mesh.client.submit("support_ticket", {"text": "Where is ORD-123456?"})
        assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    finally:
        mesh.stop()


def test_run_with_tls_prints_commands_that_work(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    assert certs(folder, "--workers", "2").returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    env = {
        **clean,
        "AGENTMESH_LISTEN": ANY_PORT,
        "AGENTMESH_METRICS_LISTEN": ANY_PORT,
        "AGENTMESH_STORE": str(tmp_path / "scheduler.db"),
    }
    with agentmesh_run("--workers", "2", "--tls", str(folder), env=env, timeout=90) as (_, lines):
        commands = printed_commands("".join(lines))
        assert len(commands) == 3 and all("client-key.pem" in c for c in commands), commands
        for command in commands:
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                env=clean,
            )
            assert result.returncode == 0, (command, result.stderr)
            if "workers" in command:
                assert "worker-1" in result.stdout and "worker-2" in result.stdout
            elif "submit" in command.lower():
                printed = json.loads(result.stdout)
                assert printed.get("request", printed)["state"] == "REQUEST_STATE_SUCCEEDED"


def test_run_refuses_one_certificate_for_every_worker(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    assert certs(folder, "--workers", "1").returncode == 0
    env = {**os.environ, **files(folder, "scheduler"), "AGENTMESH_STORE": ""}
    run = subprocess.run(
        [sys.executable, "-m", "agentmesh", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 1 and "agentmesh run --tls DIR" in run.stderr, run.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "agentmesh", "run", "--workers", "2", "--tls", str(folder)],
        env={**os.environ, "AGENTMESH_STORE": ""},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert missing.returncode == 1 and "no worker-2.pem" in missing.stderr, missing.stderr
