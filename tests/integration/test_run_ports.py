"""`agentmesh run` on port 0: a scheduler its supervisor restarts comes back on the port it got."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.server import ports
from tests.support.mesh import ANY_PORT, agentmesh_run, wait_for

pytestmark = pytest.mark.integration


def registered(target: str) -> set[str]:
    try:
        with Client(target, timeout=2.0) as client:
            return {w.info.worker_id for w in client.list_workers()}
    except AgentmeshError:
        return set()


def test_a_restarted_scheduler_keeps_its_port_and_its_workers(tmp_path: Path) -> None:
    ports_file = tmp_path / "scheduler.ports.json"
    env = {
        **os.environ,
        "AGENTMESH_LISTEN": ANY_PORT,
        "AGENTMESH_METRICS_LISTEN": ANY_PORT,
        "AGENTMESH_PORTS_FILE": str(ports_file),
        "AGENTMESH_STORE": str(tmp_path / "scheduler.db"),
        "AGENTMESH_HEARTBEAT_INTERVAL": "0.5",
    }
    workers = {"builtin-1", "builtin-2"}
    with agentmesh_run("--workers", "2", env=env, timeout=90) as (run, _):
        first = ports.read(ports_file)
        assert first is not None
        assert registered(first.grpc) == workers
        os.kill(first.pid, signal.SIGKILL)

        def restarted() -> ports.Bound | None:
            again = ports.read(ports_file)
            return again if again is not None and again.pid != first.pid else None

        again = wait_for(restarted, 30, "the supervisor to restart the scheduler")
        assert isinstance(again, ports.Bound)
        assert (again.grpc, again.metrics) == (first.grpc, first.metrics)
        wait_for(lambda: registered(again.grpc) == workers, 30, "the workers to register again")
    assert run.returncode == 0
