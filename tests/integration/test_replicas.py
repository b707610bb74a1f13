"""Two schedulers over one PostgreSQL database: one dies or stalls, no request is lost.

Real processes: two scheduler replicas on a private PostgreSQL 15 database,
simulated workers registered with both. A replica SIGKILLed mid-request has
its requests taken over by the other once their leases expire; a replica
SIGSTOPped past its lease and resumed finds its late results refused and
stops running what it lost.
"""

from __future__ import annotations

import json
import signal
import threading

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, completed_runs, wait_for
from tests.support.replicas import ReplicaMesh

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
SLOW = {"AGENTMESH_SIM_LATENCY": "0.6", "AGENTMESH_SIM_SIGMA": "0"}
SUCCEEDED = scheduler_pb2.SUBTASK_STATE_SUCCEEDED
RUNNING = scheduler_pb2.SUBTASK_STATE_RUNNING


def started_mesh(tmp_path, url: str) -> ReplicaMesh:  # type: ignore[no-untyped-def]
    mesh = ReplicaMesh(tmp_path, url, lease=1.5)
    mesh.start_replicas(2)
    for name in ("a", "b"):
        mesh.start_worker(name, backend="sim", metrics=True, **SLOW)
    mesh.wait_workers({"a", "b"})
    return mesh


def under_way(mesh: ReplicaMesh, replica: str, request_id: str) -> bool:
    """A subtask succeeded and another runs."""
    try:
        request = mesh.clients[replica].get_request(request_id, timeout=2)
    except AgentmeshError:
        return False
    states = [s.state for s in request.subtasks]
    return SUCCEEDED in states and RUNNING in states


def test_a_replica_killed_mid_request_loses_nothing(tmp_path, postgres_url: str) -> None:
    mesh = started_mesh(tmp_path, postgres_url)
    ids = [f"kill-{i}" for i in range(6)]
    answers: dict[str, scheduler_pb2.SubmitResponse] = {}
    try:
        ports = {name: mesh.worker_metrics_port(name) for name in ("a", "b")}

        def submit(request_id: str, first: str) -> None:
            # A caller whose scheduler dies asks the other, under the same request id.
            for replica in (first, "s2"):
                try:
                    answers[request_id] = mesh.clients[replica].submit(
                        "support_ticket", TICKET, request_id=request_id, timeout=60
                    )
                    return
                except AgentmeshError:
                    continue

        callers = [
            threading.Thread(target=submit, args=(rid, ("s1", "s2")[i % 2]), daemon=True)
            for i, rid in enumerate(ids)
        ]
        for caller in callers:
            caller.start()
        wait_for(lambda: under_way(mesh, "s2", ids[0]), 30, "s1's first request under way")
        owned = [r for r, (o, _, s) in mesh.owners().items() if o == "s1" and s == "RUNNING"]
        mesh.kill("s1")
        for caller in callers:
            caller.join(90)
        final = {rid: wait_for(lambda r=rid: mesh.finished("s2", r), 60, rid) for rid in ids}
        runs = {name: completed_runs(port) for name, port in ports.items()}
        owners = mesh.owners()
    finally:
        mesh.stop()

    assert owned  # s1 had requests running when it died
    assert sorted(answers) == ids  # every caller got its answer
    assert all(a.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED for a in answers.values())
    assert all(f.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED for f in final.values())
    assert all(owners[r][0] == "s2" and owners[r][1] == 2 for r in owned)  # taken over once
    succeeded = sum(1 for f in final.values() for s in f.subtasks if s.state == SUCCEEDED)
    completed = sum(ok for ok, _ in runs.values())
    replays = sum(r for _, r in runs.values())
    print(
        f"\nreplica killed: requests {len(ids)}, taken over {len(owned)}, lost 0; "
        f"subtasks succeeded {succeeded}; model calls completed {completed}; "
        f"completed twice {completed - succeeded}; answered from a worker's store {replays}"
    )
    assert completed == succeeded  # no subtask's model call completed twice


def test_a_replica_stopped_past_its_lease_has_its_late_results_refused(
    tmp_path, postgres_url: str
) -> None:
    mesh = started_mesh(tmp_path, postgres_url)
    try:
        ports = {name: mesh.worker_metrics_port(name) for name in ("a", "b")}
        threading.Thread(
            target=lambda: _quietly(
                lambda: mesh.clients["s1"].submit(
                    "support_ticket", TICKET, request_id="paused-1", timeout=60
                )
            ),
            daemon=True,
        ).start()
        wait_for(lambda: under_way(mesh, "s2", "paused-1"), 30, "the request under way on s1")
        mesh.signal("s1", signal.SIGSTOP)
        # A repeat on s2 while s1 still holds the request: answered from the database.
        streamed: list[scheduler_pb2.StreamSubmitResponse] = []
        repeat_on_s2 = threading.Thread(
            target=lambda: streamed.extend(
                mesh.clients["s2"].stream_submit(
                    "support_ticket", TICKET, request_id="paused-1", timeout=60
                )
            ),
            daemon=True,
        )
        repeat_on_s2.start()
        # s2 takes it over once s1's lease expires, and finishes it.
        wait_for(lambda: mesh.owners()["paused-1"][:2] == ("s2", 2), 30, "s2 to take it over")
        done = wait_for(lambda: mesh.finished("s2", "paused-1"), 60, "s2 to finish it")
        repeat_on_s2.join(30)
        mesh.signal("s1", signal.SIGCONT)
        wait_for(
            lambda: "request taken over by another scheduler" in mesh.log("s1"),
            30,
            "s1 to find its late writes refused",
        )
        wait_for(lambda: mesh.active("s1") == 0, 30, "s1 to stop running it")
        after = mesh.clients["s1"].get_request("paused-1")  # from the database
        repeat = mesh.clients["s1"].submit(
            "support_ticket", TICKET, request_id="paused-1", timeout=30
        )
        runs = {name: completed_runs(port) for name, port in ports.items()}
        owners = mesh.owners()
    finally:
        mesh.stop()

    assert owners["paused-1"][:3] == ("s2", 2, "SUCCEEDED")
    assert after == done  # nothing s1 finished late was applied
    assert repeat.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert streamed and streamed[-1].result.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert streamed[-1].result.answer == done.answer
    succeeded = sum(1 for s in done.subtasks if s.state == SUCCEEDED)
    completed = sum(ok for ok, _ in runs.values())
    print(
        f"\nreplica paused past its lease: late results refused; subtasks {succeeded}; "
        f"model calls completed {completed}"
    )
    assert completed == succeeded


def _quietly(call) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except AgentmeshError:
        pass


def test_both_replicas_report_the_meshs_backlog(tmp_path, postgres_url: str) -> None:
    """No worker yet: the requests' first steps wait for one, on the replica that runs
    them; each replica's scaler metric counts both replicas' waiting subtasks."""
    mesh = ReplicaMesh(tmp_path, postgres_url, AGENTMESH_WORKER_WAIT="60")
    queued = 'agentmesh_pool_queued_subtasks{tier="small"}'
    try:
        mesh.start_replicas(2)

        def start(replica: str, request_id: str) -> None:
            threading.Thread(
                target=lambda: _quietly(
                    lambda: mesh.clients[replica].submit(
                        "support_ticket", TICKET, request_id=request_id, timeout=60
                    )
                ),
                daemon=True,
            ).start()

        def both() -> tuple[float, float]:
            return mesh.metric("s1", queued), mesh.metric("s2", queued)

        start("s1", "waiting-1")
        seen = wait_for(lambda: both()[0] > 0 and len(set(both())) == 1 and both(), 30, "one")
        one = seen[0]
        start("s2", "waiting-2")
        seen_two = wait_for(lambda: both() == (2 * one, 2 * one) and both(), 30, "both")
    finally:
        mesh.stop()
    print(f"\nbacklog: one replica's request: {seen}; one on each: {seen_two}")
