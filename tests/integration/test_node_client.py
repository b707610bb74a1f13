"""The Node.js client (clients/node) passes its own tests against a real mesh.

`node --test` runs the client's unit tests and, with AGENTMESH_SCHEDULER set,
its tests against the scheduler and builtin workers started here: a support
ticket and its result, a stream of events, INVALID_ARGUMENT with field
violations, NOT_FOUND, UNAVAILABLE, ALREADY_EXISTS, a deadline, ListWorkers,
Decompose, Dispatch and GetStats. Against a mesh with mutual TLS and callers'
tokens, its secured suite: a call with the caller's certificate and a token
succeeds, and one without a token, without a certificate, or with a worker's
certificate is refused with its code and reason. `make test` installs the
client's dependencies (`npm ci --prefix clients/node`) first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import ROOT, Mesh, running_mesh
from tests.support.tls import Certs, secured_mesh, token

pytestmark = pytest.mark.integration

CLIENT = ROOT / "clients" / "node"
WORKERS = ("w1", "w2")
#: The suite of clients/node/test/secure.test.js that needs a secured mesh.
SECURED_SUITE = "a secured mesh"
#: The suite of clients/node/test/renewal.test.js, run by test_node_renewal.py.
RENEWAL_SUITE = "renewed certificates"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # A short wait for a missing capability: the tests that need one (translate)
    # wait this long for UNAVAILABLE, and no longer.
    with running_mesh(
        tmp_path_factory.mktemp("node"), workers=WORKERS, AGENTMESH_WORKER_WAIT="1"
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Mesh]:
    """A scheduler with TLS on that checks callers' tokens, and a builtin worker."""
    with secured_mesh(tmp_path_factory.mktemp("node-secured"), certs) as mesh:
        yield mesh


def node_test(env: dict[str, str], log: Path, *files: str) -> tuple[int, str]:
    """`node --test` in clients/node (TAP output), on `files` or every test file: its
    exit status and output, also written to log."""
    node = shutil.which("node")
    assert node, "node is not installed: the Node client's tests need Node.js 20 or later"
    assert (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "the Node client's dependencies are not installed: run the suite through `make test`, "
        "or `npm ci --prefix clients/node`"
    )
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *files],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    output = result.stdout + result.stderr
    log.write_text(output)
    return result.returncode, output


def test_the_node_client_passes_its_tests_against_a_real_mesh(mesh: Mesh) -> None:
    env = {
        **os.environ,
        "AGENTMESH_SCHEDULER": mesh.target,
        "AGENTMESH_TEST_WORKERS": ",".join(WORKERS),
    }
    returncode, output = node_test(env, mesh.log_dir / "node-test.log")
    assert returncode == 0, output
    # Every test ran: none failed, and the mesh suite was not skipped for want of a scheduler.
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output
    # The secured suite waits for a secured mesh (below), the renewal suite for the
    # certificates test_node_renewal.py makes.
    skipped = re.findall(r"^ok \d+ - (.*) # SKIP", output, re.MULTILINE)
    assert sorted(skipped) == sorted([SECURED_SUITE, RENEWAL_SUITE]), output
    assert re.search(r"^ok \d+ - a running mesh$", output, re.MULTILINE), output
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    assert passed and int(passed.group(1)) >= 20, output
    # The mesh suite's requests reached this scheduler.
    assert mesh.client.get_stats().succeeded >= 4


def test_the_node_client_calls_a_mesh_with_mutual_tls_and_tokens(
    secured: Mesh, certs: Certs
) -> None:
    caller, worker = certs.client("node"), certs.worker("w9")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    env = {
        **clean,
        **caller.env,
        "AGENTMESH_SCHEDULER": secured.target,
        "AGENTMESH_TEST_SECURE": "1",
        "AGENTMESH_TOKEN": token("client"),
        "AGENTMESH_TEST_WORKER_CERT": str(worker.cert),
        "AGENTMESH_TEST_WORKER_KEY": str(worker.key),
    }
    log = secured.log_dir / "node-secure-test.log"
    returncode, output = node_test(env, log, "test/secure.test.js")
    assert returncode == 0, output
    assert re.search(r"^# fail 0$", output, re.MULTILINE), output
    assert "# SKIP" not in output, output
    assert re.search(rf"^ok \d+ - {SECURED_SUITE}$", output, re.MULTILINE), output
    # The refusals were the scheduler's, counted by reason; the successes reached it.
    assert secured.client.get_stats().succeeded >= 2
    url = f"http://127.0.0.1:{secured.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    denied = dict(re.findall(r'^agentmesh_auth_denied_total\{reason="([^"]+)"\} (\S+)', body, re.M))
    for reason in ("missing_token", "malformed_token", "role_denied", "not_client"):
        assert float(denied.get(reason, 0)) >= 1, (reason, denied)
