"""The Node worker with TLS on counts the calls it refuses for their certificate, as the
Python worker does: agentmesh_auth_denied_total{reason="not_scheduler"}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration import test_node_worker
from tests.integration.test_node_metrics import NodeWorker, http_get, metrics_url, value
from tests.integration.test_node_worker_tls import refused_execute
from tests.support.mesh import Mesh, wait_for
from tests.support.tls import Certs

pytestmark = test_node_worker.pytestmark


@pytest.fixture
def tls_mesh(tmp_path: Path) -> Iterator[tuple[Mesh, Certs]]:
    """A scheduler with TLS on, and the mesh's certificates."""
    certs = Certs(tmp_path / "certs")
    mesh = Mesh(tmp_path, client_tls=certs.client().config(), **certs.scheduler().env)
    try:
        mesh.start_scheduler()
        yield mesh, certs
    finally:
        mesh.stop()


def test_calls_refused_for_their_certificate_are_counted(tls_mesh: tuple[Mesh, Certs]) -> None:
    mesh, certs = tls_mesh
    worker = NodeWorker(
        mesh,
        "nodew",
        AGENTMESH_WORKER_METRICS_LISTEN="127.0.0.1:0",
        AGENTMESH_PORTS_FILE=str(mesh.ports_file("nodew")),
        **certs.worker("nodew").env,
    )
    try:
        url = metrics_url(mesh, worker)
        assert value(http_get(url), "agentmesh_auth_denied_total", reason="not_scheduler") == 0
        for n, caller in enumerate((certs.client(), certs.worker("other"))):
            code, reason = refused_execute(worker.address, caller, f"r{n}")
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_SCHEDULER")
        wait_for(
            lambda: (
                value(http_get(url), "agentmesh_auth_denied_total", reason="not_scheduler") == 2
            ),
            10,
            "two refusals counted",
        )
        # Refused before anything ran: no subtask counted.
        assert "agentmesh_worker_subtasks_total{" not in http_get(url)
    finally:
        worker.stop()
