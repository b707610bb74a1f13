"""The Node.js client (clients/node) passes its own tests against a real mesh.

`node --test` runs the client's unit tests and, with AGENTMESH_SCHEDULER set,
its tests against the scheduler and builtin workers started here: a support
ticket and its result, a stream of events, INVALID_ARGUMENT with field
violations, NOT_FOUND, UNAVAILABLE, ALREADY_EXISTS, a deadline, ListWorkers,
Decompose, Dispatch and GetStats. `make test` installs the client's
dependencies (`npm ci --prefix clients/node`) first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import ROOT, Mesh, running_mesh

pytestmark = pytest.mark.integration

CLIENT = ROOT / "clients" / "node"
WORKERS = ("w1", "w2")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # A short wait for a missing capability: the tests that need one (translate)
    # wait this long for UNAVAILABLE, and no longer.
    with running_mesh(
        tmp_path_factory.mktemp("node"), workers=WORKERS, AGENTMESH_WORKER_WAIT="1"
    ) as mesh:
        yield mesh


def node_test(env: dict[str, str], log: Path) -> tuple[int, str]:
    """`node --test` in clients/node (TAP output): its exit status and output, also
    written to log."""
    node = shutil.which("node")
    assert node, "node is not installed: the Node client's tests need Node.js 20 or later"
    assert (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "the Node client's dependencies are not installed: run the suite through `make test`, "
        "or `npm ci --prefix clients/node`"
    )
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap"],
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
    assert "# SKIP" not in output, output
    assert re.search(r"^ok \d+ - a running mesh$", output, re.MULTILINE), output
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    assert passed and int(passed.group(1)) >= 20, output
    # The mesh suite's requests reached this scheduler.
    assert mesh.client.get_stats().succeeded >= 4
