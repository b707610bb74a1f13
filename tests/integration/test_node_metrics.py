"""The Node worker's /metrics in a real mesh: its counters, histogram and gauges move
with the work it does, under the Python worker's names, types, help text and labels,
so the dashboard's worker panels and the worker alert rules cover both."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentmesh.v1 import worker_pb2_grpc
from tests.integration import test_node_worker
from tests.integration.test_node_worker import (
    FRENCH,
    NodeWorker,
    execute,
    node_workers,
    status_of,
)
from tests.integration.test_prometheus import promtool
from tests.support.mesh import ROOT, Mesh, port_of, refused, wait_for, wait_ports

pytestmark = test_node_worker.pytestmark

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "agentmesh.json"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "agentmesh.rules.yml"

#: A metric family: its type, help text, and the label names of each of its samples.
Family = tuple[str, str, frozenset[frozenset[str]]]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """A scheduler alone, for the workers each test starts."""
    mesh = Mesh(tmp_path, AGENTMESH_WORKER_WAIT="2")
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def node(mesh: Mesh) -> Iterator[Callable[..., NodeWorker]]:
    """Starts Node workers serving /metrics on a free port, announced in a ports file."""
    with node_workers(mesh) as start:
        yield lambda name, **env: start(
            name,
            AGENTMESH_WORKER_METRICS_LISTEN="127.0.0.1:0",
            AGENTMESH_PORTS_FILE=str(mesh.ports_file(name)),
            **env,
        )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metrics_url(mesh: Mesh, worker: NodeWorker) -> str:
    bound = wait_ports(mesh.ports_file(worker.name), worker.process, 10, worker.name)
    assert bound.grpc == worker.address and bound.pid == worker.process.pid
    assert bound.metrics and port_of(bound.metrics) != 0
    assert f"metrics on {bound.metrics}" in worker.log()
    return f"http://{bound.metrics}/metrics"


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples called `name`: their labels, and values."""
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text, name).get(frozenset(labels.items()), 0.0)


def families(text: str) -> dict[str, Family]:
    """agentmesh_ metric families; without the `_created` series prometheus_client adds for
    counters and histograms (their creation time, which Node's client does not export)."""
    return {
        f.name: (f.type, f.documentation, frozenset(frozenset(s.labels) for s in f.samples))
        for f in text_string_to_metric_families(text)
        if f.name.startswith("agentmesh_") and not f.name.endswith("_created")
    }


def worker_metrics_queried() -> set[str]:
    """The worker's own metrics the dashboard and the alert rules query, as families."""
    text = DASHBOARD.read_text() + RULES.read_text()
    found = set(re.findall(r"agentmesh_worker_[a-z_]+", text))
    family = {re.sub(r"(_total|_bucket|_count|_sum|_error_ratio)$", "", name) for name in found}
    # Recorded series (`..._error_ratio`) and the scheduler's view of workers are not the worker's.
    return family - {"agentmesh_worker_evictions", "agentmesh_worker_ejections"}


def test_the_node_workers_metrics_follow_its_subtasks(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-m", AGENTMESH_NODE_WORKER_DELAY="2", AGENTMESH_CAPACITY="1")
    url = metrics_url(mesh, worker)
    wait_for(lambda: status_of(mesh, "node-m"), 30, "node-m to register")
    text = http_get(url)
    assert (
        value(
            text, "agentmesh_worker_info", worker="node-m", backend="node", model="", tier="builtin"
        )
        == 1
    )
    assert value(text, "agentmesh_worker_in_flight") == 0
    assert "process_cpu_user_seconds_total" in text and "nodejs_heap_size_used_bytes" in text

    with grpc.insecure_channel(worker.address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        first = stub.Execute.future(execute("r1", {"text": FRENCH}), timeout=30)
        second = stub.Execute.future(execute("r2", {"text": "Where is my parcel?"}), timeout=30)

        def one_running_one_waiting() -> bool:
            now = http_get(url)
            return (
                value(now, "agentmesh_worker_in_flight") == 1
                and value(now, "agentmesh_worker_queue_length") == 1
            )

        wait_for(one_running_one_waiting, 10, "one subtask in the slot and one waiting")
        assert first.result().output["language"] == "fr"
        assert second.result().output["language"] == "en"
        assert stub.Execute(execute("r1", {"text": FRENCH}), timeout=10).replayed
        # Past its deadline the caller leaves and the work stops: counted as CANCELLED,
        # as the Python worker counts it, and left out of its error ratio.
        code, _, _ = refused(stub.Execute, execute("r3", {"text": "hi"}), timeout=0.5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED

    def settled() -> str | None:
        now = http_get(url)
        return (
            now
            if value(
                now,
                "agentmesh_worker_subtasks_total",
                capability="detect_language",
                code="CANCELLED",
            )
            else None
        )

    text = str(wait_for(settled, 10, "the cancelled subtask to be counted"))
    ran = {dict(k)["code"]: v for k, v in samples(text, "agentmesh_worker_subtasks_total").items()}
    assert ran == {"OK": 2, "CANCELLED": 1}
    assert value(text, "agentmesh_worker_replays_total") == 1
    assert value(text, "agentmesh_worker_in_flight") == 0
    assert value(text, "agentmesh_worker_queue_length") == 0
    count = "agentmesh_worker_subtask_duration_seconds_count"
    assert value(text, count, capability="detect_language") == 3
    buckets = {
        float(dict(k)["le"]): v
        for k, v in samples(text, "agentmesh_worker_subtask_duration_seconds_bucket").items()
        if dict(k)["capability"] == "detect_language"
    }
    # The two runs took their 2 s delay each (the time waiting for the slot not included);
    # the cancelled one, about its caller's 0.5 s.
    assert (
        buckets[0.25] == 0
        and buckets[1.0] == 1
        and buckets[2.5] == 3
        and buckets[float("inf")] == 3
    )
    # Well-formed, as promtool lints the Python workers' (test_prometheus.py); the worker
    # metrics only: prom-client's own nodejs_active_*_total gauges break its naming rule.
    ours = "".join(line + "\n" for line in text.splitlines() if "agentmesh_" in line)
    result = promtool("check", "metrics", stdin=ours)
    problems = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not problems, problems


def test_the_node_and_python_workers_export_the_same_worker_metrics(
    mesh: Mesh, node: Callable[..., NodeWorker]
) -> None:
    worker = node("node-c")
    node_url = metrics_url(mesh, worker)
    mesh.start_worker("py-c", skills="detect_language", metrics=True)
    python_address = mesh.ports("py-c").grpc
    python_url = f"http://127.0.0.1:{mesh.worker_metrics_port('py-c')}/metrics"
    for address in (worker.address, python_address):
        with grpc.insecure_channel(address) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            assert not stub.Execute(execute("r1", {"text": FRENCH}), timeout=30).replayed
            assert stub.Execute(execute("r1", {"text": FRENCH}), timeout=30).replayed

    node_families, python_families = families(http_get(node_url)), families(http_get(python_url))
    queried = worker_metrics_queried()
    assert queried and queried <= set(node_families), queried - set(node_families)
    # Nothing the Python worker lacks, and each shared family alike in type, help and labels.
    assert set(node_families) <= set(python_families), set(node_families) - set(python_families)
    for name, family in node_families.items():
        assert family == python_families[name], name
    # And the Python worker exports no worker metric the Node worker lacks.
    assert set(python_families) == set(node_families)
