"""A scheduler that stops (SIGSTOP) longer than the liveness timeout evicts no one on waking."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
HEARTBEAT = 0.2  # liveness timeout 0.5 s
STALL = 2.0
STALLS = 3


@pytest.fixture
def mesh(tmp_path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path, heartbeat_interval=HEARTBEAT)
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


def evictions(mesh: Mesh) -> float:
    url = f"http://127.0.0.1:{mesh.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        float(v)
        for v in re.findall(r"^agentmesh_worker_evictions_total\{[^}]*\} (\S+)", body, re.M)
    )


def test_a_stalled_scheduler_evicts_no_worker_and_loses_no_request(mesh: Mesh) -> None:
    names = {"a", "b", "c"}
    for name in names:
        mesh.start_worker(name, backend="sim", AGENTMESH_SIM_LATENCY="0.4", AGENTMESH_SIM_SIGMA="0")
    mesh.wait_workers(names)
    assert evictions(mesh) == 0

    outcomes: dict[str, str] = {}

    def submit(request_id: str) -> None:
        try:
            request = mesh.client.submit("support_ticket", TICKET, request_id=request_id)
            outcomes[request_id] = scheduler_pb2.RequestState.Name(request.state)
        except AgentmeshError as error:
            outcomes[request_id] = error.code_name

    # Which runs first on waking, the sweep or the reading of the queued heartbeats,
    # is a race between threads: several stalls make a lucky pass unlikely.
    for stall in range(STALLS):
        threads = [threading.Thread(target=submit, args=(f"stall-{stall}-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        wait_for(
            lambda: sum(w.in_flight for w in mesh.client.list_workers(timeout=2)) > 0,
            30,
            "subtasks in flight",
        )
        mesh.signal("scheduler", signal.SIGSTOP)
        # The fault itself: the scheduler stays stopped for four liveness timeouts.
        time.sleep(STALL)
        woke = time.time()
        mesh.signal("scheduler", signal.SIGCONT)
        for thread in threads:
            thread.join(60)

    assert len(outcomes) == 4 * STALLS
    assert set(outcomes.values()) == {"REQUEST_STATE_SUCCEEDED"}
    # A few heartbeats after waking, every worker is still the one it was, never evicted.
    wait_for(
        lambda: all(
            w.last_heartbeat.ToDatetime().timestamp() > woke + 2 * HEARTBEAT
            for w in mesh.client.list_workers(timeout=2)
        ),
        10,
        "heartbeats after the stall",
    )
    assert {w.info.worker_id for w in mesh.client.list_workers(timeout=2)} == names
    evicted = evictions(mesh)
    print(
        f"\nscheduler stopped {STALLS} times {STALL} s (liveness timeout {2.5 * HEARTBEAT} s): "
        f"{len(outcomes)} requests in flight succeeded, {evicted:.0f} workers evicted"
    )
    assert evicted == 0
    assert "scheduler stalled" in mesh.log("scheduler")
