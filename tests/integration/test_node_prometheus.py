"""A real Prometheus, with deploy/'s worker job and rules, scraping the Node worker alone:
the dashboard's worker panels and the worker rules' series have data from it, as they
have from the Python workers (test_prometheus.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh.v1 import worker_pb2_grpc
from tests.integration import test_node_worker
from tests.integration.test_node_metrics import NodeWorker, metrics_url
from tests.integration.test_node_worker import FRENCH, execute
from tests.integration.test_prometheus import (
    RULES,
    WORKER_JOB,
    Prometheus,
    dashboard_queries,
    start_prometheus,
    substitute_variables,
)
from tests.support.mesh import Mesh, wait_for

pytestmark = test_node_worker.pytestmark

NAME = "node-p"
#: The worker's own metrics; the evictions panel is the scheduler's view of workers.
WORKER_METRIC = "agentmesh_worker_"
NOT_THE_WORKERS = "agentmesh_worker_evictions"


class Traffic:
    """A thread running subtasks on the worker, each a new one and then its repeat."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ran = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            while not self._stop.is_set():
                request = execute(f"t{self.ran}", {"text": FRENCH})
                stub.Execute(request, timeout=10)
                stub.Execute(request, timeout=10)  # a replay
                self.ran += 1
                self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[Prometheus]:
    """A scheduler, the Node worker serving /metrics, traffic on it, and Prometheus scraping it."""
    mesh = Mesh(tmp_path, AGENTMESH_WORKER_WAIT="2")
    worker: NodeWorker | None = None
    traffic: Traffic | None = None
    server: Prometheus | None = None
    try:
        mesh.start_scheduler()
        worker = NodeWorker(
            mesh,
            NAME,
            AGENTMESH_WORKER_METRICS_LISTEN="127.0.0.1:0",
            AGENTMESH_PORTS_FILE=str(mesh.ports_file(NAME)),
        )
        target = metrics_url(mesh, worker).removeprefix("http://").removesuffix("/metrics")
        traffic = Traffic(worker.address)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": WORKER_JOB,
                            "static_configs": [{"targets": [target], "labels": {"worker": NAME}}],
                        }
                    ],
                }
            )
        )
        server = start_prometheus(config, tmp_path)
        wait_for(lambda: server is not None and server.targets_up(1), 30, "the worker to be up")
        yield server
    finally:
        if traffic is not None:
            traffic.stop()
        if server is not None:
            server.stop()
        if worker is not None:
            worker.stop()
        mesh.stop()


def test_the_dashboards_worker_panels_and_the_worker_rules_cover_the_node_worker(
    scraped: Prometheus,
) -> None:
    queries = [
        (title, substitute_variables(expr))
        for title, expr in dashboard_queries()
        if WORKER_METRIC in expr and NOT_THE_WORKERS not in expr
    ]
    assert len(queries) >= 6
    # The rules' worker series; the error ratio has none while nothing fails, as for a
    # Python worker, since its numerator has no series then.
    queries.append(("rule", "instance:agentmesh_worker_subtask_duration_seconds:p95_rate5m"))
    # Rates need a few scrapes of the traffic: poll until every query has data, within a bound.
    deadline = time.monotonic() + 60
    while True:
        empty = [f"{title}: {expr}" for title, expr in queries if not scraped.query(expr)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not empty, "worker queries without data from the Node worker:\n" + "\n".join(empty)
    for _, expr in queries:
        assert {r["metric"].get("worker") for r in scraped.query(expr)} == {NAME}, expr
