"""The scheduler's store under real faults, with real processes.

A file size limit (RLIMIT_FSIZE, set on the running scheduler with
prlimit: file modes do not stop root), the store's directory deleted, a
damaged file at start, and a restart while a request is unfinished. What
the scheduler acknowledged must be in the store after a SIGKILL.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.errors import AgentmeshError, Unavailable
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
SERVING = health_pb2.HealthCheckResponse.SERVING


def health(mesh: Mesh) -> int:
    with grpc.insecure_channel(mesh.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status


def store_up(mesh: Mesh) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{mesh.metrics_port}/metrics", timeout=5)
    for line in body.read().decode().splitlines():
        if line.startswith("agentmesh_store_up "):
            return float(line.split()[1])
    raise AssertionError("agentmesh_store_up is not exported")


def submit(mesh: Mesh, request_id: str, timeout: float = 10) -> AgentmeshError | None:
    """None when the scheduler answered OK (acknowledged), else its error."""
    try:
        request = mesh.client.submit(
            "support_ticket", TICKET, request_id=request_id, timeout=timeout
        )
    except AgentmeshError as error:
        return error
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    return None


def found_after_restart(mesh: Mesh, ids: list[str]) -> dict[str, int]:
    mesh.kill("scheduler")
    mesh.start_scheduler()
    states = {}
    for request_id in ids:
        try:
            states[request_id] = mesh.client.get_request(request_id, timeout=5).state
        except AgentmeshError:
            states[request_id] = -1
    return states


def test_a_store_that_cannot_grow_refuses_work_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_RECOVERY_DELAY="0.5")
    try:
        mesh.start_scheduler()
        mesh.start_worker("a", backend="sim")
        mesh.wait_workers({"a"})
        outcomes = {f"before-{i}": submit(mesh, f"before-{i}") for i in range(3)}
        pid = mesh.processes["scheduler"].pid
        limit = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        # Every write past the first 4 KiB of a file fails with EFBIG: the disk is "full".
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (4096, limit[1]))
        outcomes |= {f"full-{i}": submit(mesh, f"full-{i}", timeout=3) for i in range(5)}
        refused = {k: e for k, e in outcomes.items() if e is not None}
        assert refused, "a store that cannot write still acknowledged every request"
        for error in refused.values():
            assert isinstance(error, Unavailable) and error.reason == "STORE_UNAVAILABLE"
        assert health(mesh) != SERVING and store_up(mesh) == 0
        assert mesh.log("scheduler").count("cannot write") == 1

        resource.prlimit(pid, resource.RLIMIT_FSIZE, limit)
        wait_for(lambda: health(mesh) == SERVING, 30, "the scheduler to serve again")
        assert store_up(mesh) == 1
        outcomes |= {f"after-{i}": submit(mesh, f"after-{i}") for i in range(3)}
        retried = sorted(refused)[0]
        outcomes[retried] = submit(mesh, retried)  # a repeat of a refused id now runs
        acknowledged = [k for k, e in outcomes.items() if e is None]
        states = found_after_restart(mesh, acknowledged)
    finally:
        mesh.stop()

    succeeded = [k for k, s in states.items() if s == scheduler_pb2.REQUEST_STATE_SUCCEEDED]
    print(
        f"\nstore full: {len(outcomes)} ids, {len(acknowledged)} answered OK, "
        f"{len(refused)} refused with STORE_UNAVAILABLE; after a SIGKILL and a restart "
        f"{len(succeeded)} of the {len(acknowledged)} acknowledged are SUCCEEDED in the store"
    )
    assert sorted(succeeded) == sorted(acknowledged)


def test_a_deleted_store_directory_is_a_failure_not_a_silent_new_store(tmp_path: Path) -> None:
    store = tmp_path / "store" / "scheduler.db"
    mesh = Mesh(tmp_path, AGENTMESH_STORE=str(store))
    try:
        mesh.start_scheduler()
        mesh.start_worker("a", backend="sim")
        mesh.wait_workers({"a"})
        assert submit(mesh, "kept") is None
        shutil.rmtree(store.parent)
        wait_for(lambda: health(mesh) != SERVING, 10, "the scheduler to stop serving")
        error = submit(mesh, "lost", timeout=3)
        assert isinstance(error, Unavailable) and error.reason == "STORE_UNAVAILABLE"
        assert str(store) in error.message or error.metadata.get("store") == str(store)
        log = mesh.log("scheduler")
    finally:
        mesh.stop()
    [line] = [line for line in log.splitlines() if "cannot write" in line]
    assert "deleted or replaced" in line and "AGENTMESH_STORE" in line
    print(f"\ndeleted store: {line}")


def test_a_repeat_after_a_restart_waits_for_the_unfinished_request(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_RECOVERY_DELAY="3", **store_env)
    slow = {"AGENTMESH_SIM_LATENCY": "0.5", "AGENTMESH_SIM_SIGMA": "0"}
    try:
        mesh.start_scheduler()
        mesh.start_worker("a", backend="sim", **slow)
        mesh.wait_workers({"a"})
        threading.Thread(target=submit, args=(mesh, "unfinished", 60), daemon=True).start()

        def started() -> bool:
            try:
                request = mesh.client.get_request("unfinished", timeout=2)
            except AgentmeshError:
                return False
            # Subtasks start once the request is committed.
            return any(s.state == scheduler_pb2.SUBTASK_STATE_RUNNING for s in request.subtasks)

        wait_for(started, 30, "the request's first subtask to start")
        mesh.kill("scheduler")
        mesh.start_scheduler()
        during_delay = mesh.client.get_request("unfinished", timeout=5).state
        repeat = mesh.client.submit("support_ticket", TICKET, request_id="unfinished", timeout=60)
    finally:
        mesh.stop()
    assert during_delay == scheduler_pb2.REQUEST_STATE_RUNNING  # GetRequest answers at once
    assert repeat.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED and repeat.HasField("answer")


def damage(path: Path, kind: str) -> None:
    if kind == "garbage":
        path.write_bytes(b"this is not a database\n" * 500)
        return
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE filler (x TEXT)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 200)
    db.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:  # keep the header page, overwrite the rest
        file.seek(8192)
        file.write(b"\xa5" * (size - 8192))


@pytest.mark.parametrize("kind", ["garbage", "damaged-pages"])
def test_a_damaged_store_stops_the_scheduler_with_one_line(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "scheduler.db"
    damage(store, kind)
    env = {"AGENTMESH_STORE": str(store), "AGENTMESH_LISTEN": "127.0.0.1:0"}
    result = subprocess.run(
        [sys.executable, "-m", "agentmesh", "scheduler"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    lines = result.stderr.strip().splitlines()
    print(f"\n{kind}: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert str(store) in lines[0] and "AGENTMESH_STORE" in lines[0]
    assert "move it aside" in lines[0] and "backup" in lines[0]
