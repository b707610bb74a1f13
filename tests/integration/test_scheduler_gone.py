"""A scheduler killed while a worker runs its subtasks: the worker finishes them and keeps
the results, so the restarted scheduler's repeats are replays, not second model calls."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from pathlib import Path

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())


def worker_counts(port: int) -> dict[str, int]:
    """Subtasks the worker ended, by code, and the repeats it answered from its store."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts: dict[str, int] = {}
    for code, value in re.findall(
        r'agentmesh_worker_subtasks_total\{[^}]*code="(\w+)"[^}]*\} (\S+)', body
    ):
        counts[code] = counts.get(code, 0) + int(float(value))
    replays = re.search(r"^agentmesh_worker_replays_total (\S+)", body, re.MULTILINE)
    counts["replays"] = int(float(replays.group(1))) if replays else 0
    in_flight = re.search(r"^agentmesh_worker_in_flight (\S+)", body, re.MULTILINE)
    counts["in_flight"] = int(float(in_flight.group(1))) if in_flight else 0
    return counts


def test_subtasks_running_when_the_scheduler_dies_finish_once_and_are_replayed(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_RECOVERY_DELAY="4")
    try:
        mesh.start_scheduler()
        # One worker, so the restarted scheduler can only send its repeats back to it.
        mesh.start_worker(
            "a",
            backend="sim",
            metrics=True,
            AGENTMESH_WORKER_STORE=str(tmp_path / "worker-a.db"),
            AGENTMESH_SIM_LATENCY="3",
            AGENTMESH_SIM_SIGMA="0",
        )
        mesh.wait_workers({"a"})
        metrics = mesh.worker_metrics_port("a")

        def submit() -> None:
            try:
                mesh.client.submit("support_ticket", TICKET, request_id="gone-1", timeout=60)
            except AgentmeshError:
                pass  # the scheduler died under the call; the request is resumed all the same

        threading.Thread(target=submit, daemon=True).start()
        wait_for(lambda: worker_counts(metrics)["in_flight"] >= 2, 30, "subtasks to run")
        in_flight = worker_counts(metrics)["in_flight"]
        mesh.kill("scheduler")
        mesh.start_scheduler()

        def finished() -> scheduler_pb2.Request | None:
            try:
                request = mesh.client.get_request("gone-1", timeout=2)
            except AgentmeshError:
                return None
            return request if request.state != scheduler_pb2.REQUEST_STATE_RUNNING else None

        request = wait_for(finished, 90, "the resumed request to finish")
        counts = worker_counts(metrics)
    finally:
        mesh.stop()

    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    succeeded = sum(1 for s in request.subtasks if s.state == scheduler_pb2.SUBTASK_STATE_SUCCEEDED)
    runs = sum(n for code, n in counts.items() if code not in ("replays", "in_flight"))
    repeated = runs - succeeded
    print(
        f"\nscheduler killed with {in_flight} subtasks running on the worker: "
        f"{succeeded} subtasks, {runs} runs ({counts.get('CANCELLED', 0)} cancelled), "
        f"{counts['replays']} replays, {repeated} repeated runs"
    )
    assert counts.get("CANCELLED", 0) == 0  # nothing dropped because the scheduler died
    assert repeated == 0
    assert counts["replays"] >= in_flight  # the restarted scheduler's repeats were answered
