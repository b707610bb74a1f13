"""A scheduler killed with SIGKILL mid-request and restarted on its store finishes the request
(with each store: a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import json
import threading

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, Mesh, completed_runs, wait_for

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
SLOW = {"AGENTMESH_SIM_LATENCY": "1.0", "AGENTMESH_SIM_SIGMA": "0"}


def test_restarted_scheduler_resumes_without_rerunning_finished_subtasks(
    tmp_path, store_env: dict[str, str]
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_RECOVERY_DELAY="1.5", **store_env)
    try:
        mesh.start_scheduler()
        for name in ("a", "b"):
            mesh.start_worker(name, backend="sim", metrics=True, **SLOW)
        mesh.wait_workers({"a", "b"})
        ports = {name: mesh.worker_metrics_port(name) for name in ("a", "b")}
        caller_saw: list[BaseException] = []

        def submit() -> None:
            try:
                mesh.client.submit("support_ticket", TICKET, request_id="restart-1", timeout=60)
            except AgentmeshError as error:  # the scheduler died under the call
                caller_saw.append(error)

        threading.Thread(target=submit, daemon=True).start()

        def first_level_done() -> bool:
            try:
                request = mesh.client.get_request("restart-1", timeout=2)
            except AgentmeshError:
                return False
            states = {s.id: s.state for s in request.subtasks}
            return states["entities"] == scheduler_pb2.SUBTASK_STATE_SUCCEEDED and any(
                s == scheduler_pb2.SUBTASK_STATE_RUNNING for s in states.values()
            )

        wait_for(first_level_done, 30, "the first subtasks to finish")
        before = {s.id: s for s in mesh.client.get_request("restart-1").subtasks}
        mesh.kill("scheduler")
        mesh.start_scheduler()

        def finished() -> scheduler_pb2.Request | None:
            try:
                request = mesh.client.get_request("restart-1", timeout=2)
            except AgentmeshError:
                return None
            return request if request.state != scheduler_pb2.REQUEST_STATE_RUNNING else None

        request = wait_for(finished, 60, "the resumed request to finish")
        runs = {name: completed_runs(port) for name, port in ports.items()}
    finally:
        mesh.stop()

    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    after = {s.id: s for s in request.subtasks}
    for step, subtask in before.items():
        if subtask.state == scheduler_pb2.SUBTASK_STATE_SUCCEEDED:
            assert after[step].output == subtask.output  # kept, not recomputed
            assert after[step].worker_id == subtask.worker_id
    ran = [s for s in request.subtasks if s.state == scheduler_pb2.SUBTASK_STATE_SUCCEEDED]
    completed = sum(ok for ok, _ in runs.values())
    replays = sum(r for _, r in runs.values())
    lost = 0 if request.state != scheduler_pb2.REQUEST_STATE_RUNNING else 1
    store = "postgresql" if store_env else "sqlite"
    print(
        f"\n{store}: requests lost: {lost}; subtasks: {len(ran)}; "
        f"model calls completed: {completed}; "
        f"completed twice: {completed - len(ran)}; answered from a worker's store: {replays}"
    )
    assert completed == len(ran)  # no subtask's model call completed twice
    assert caller_saw  # the original caller was told its call broke, and can GetRequest
