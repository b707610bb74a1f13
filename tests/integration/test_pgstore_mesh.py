"""A real scheduler on a real PostgreSQL store: requests complete and are in the database;
a database that cannot be used stops it at start with one line; the database restarted
under load is an outage that loses nothing.

The SIGKILL of a scheduler mid-request runs with both stores in test_recovery.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from agentmesh.errors import AgentmeshError, Unavailable
from agentmesh.scheduler.pgstore import migrations
from agentmesh.v1 import scheduler_pb2
from tests.integration.test_store_faults import SERVING, TICKET, health, store_up, submit
from tests.support.mesh import ROOT, Mesh, completed_runs, wait_for
from tests.support.postgres import PASSWORD, PostgresServer

pytestmark = pytest.mark.integration


def stored_states(url: str, ids: list[str]) -> dict[str, str]:
    """The state of each request as the database has it, read on a connection of our own."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT request_id, state FROM requests WHERE request_id = ANY(%s)", (ids,)
        ).fetchall()
    return dict(rows)


def test_a_scheduler_on_postgresql_completes_requests_and_keeps_them(
    tmp_path: Path, postgres_url: str
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_STORE=postgres_url)
    ids = [f"pg-{i}" for i in range(6)]
    try:
        mesh.start_scheduler()
        for name in ("a", "b"):
            mesh.start_worker(name)
        mesh.wait_workers({"a", "b"})
        answers = {
            i: mesh.client.submit("support_ticket", TICKET, request_id=i, timeout=30) for i in ids
        }
        mesh.kill("scheduler")
        mesh.start_scheduler()  # nothing in memory: GetRequest answers from the database
        after = {i: mesh.client.get_request(i, timeout=5) for i in ids}
        log = mesh.log("scheduler")
    finally:
        mesh.stop()
    assert all(a.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED for a in answers.values())
    assert {i: r.answer for i, r in after.items()} == {i: a.answer for i, a in answers.items()}
    assert stored_states(postgres_url, ids) == dict.fromkeys(ids, "SUCCEEDED")
    with psycopg.connect(postgres_url) as db:
        [(subtasks,)] = db.execute("SELECT count(*) FROM subtasks").fetchall()
    steps = sum(len(r.subtasks) for r in after.values())
    print(f"\npostgresql: {len(ids)} requests SUCCEEDED, {subtasks} subtask rows of {steps} steps")
    assert subtasks == steps
    assert PASSWORD not in log


@pytest.mark.parametrize("fault", ["wrong password", "nobody listening"])
def test_a_database_that_cannot_be_used_stops_the_scheduler_with_one_line(
    postgres: PostgresServer, postgres_url: str, fault: str
) -> None:
    url = (
        postgres_url.replace(PASSWORD, "wrong-password")
        if fault == "wrong password"
        else postgres_url.replace(f":{postgres.port}/", ":1/")
    )
    env = {"AGENTMESH_STORE": url, "AGENTMESH_LISTEN": "127.0.0.1:0"}
    result = subprocess.run(
        [sys.executable, "-m", "agentmesh", "scheduler"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    print(f"\n{fault}: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "postgresql://agentmesh:***@127.0.0.1:" in output and "AGENTMESH_STORE" in output
    assert PASSWORD not in output and "wrong-password" not in output


def write_errors(mesh: Mesh) -> float:
    """The scheduler's failed commits (agentmesh_store_write_errors_total)."""
    url = f"http://127.0.0.1:{mesh.metrics_port}/metrics"
    for line in urllib.request.urlopen(url, timeout=5).read().decode().splitlines():
        if line.startswith("agentmesh_store_write_errors_total "):
            return float(line.split()[1])
    return 0.0


class Load:
    """Callers submitting tickets one after another, each repeating a refused id (the same
    request id, as a client does) until it is answered."""

    def __init__(self, mesh: Mesh, callers: int) -> None:
        self.mesh = mesh
        self.stop = threading.Event()
        self.answered: dict[str, int] = {}
        #: Ids refused at least once with UNAVAILABLE (STORE_UNAVAILABLE) before their answer.
        self.refused: set[str] = set()
        #: (started, answered) monotonic times of every answered request.
        self.times: dict[str, tuple[float, float]] = {}
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._caller, args=(n,), daemon=True) for n in range(callers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _caller(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            request_id = f"load-{n}-{i}"
            started = time.monotonic()
            while True:
                try:
                    answer = self.mesh.client.submit(
                        "support_ticket", TICKET, request_id=request_id, timeout=60
                    )
                except Unavailable as error:
                    if error.reason != "STORE_UNAVAILABLE":
                        self.errors.append(f"{request_id}: {error}")
                        return
                    self.refused.add(request_id)
                    self.stop.wait(0.1)
                    continue
                except AgentmeshError as error:
                    self.errors.append(f"{request_id}: {error}")
                    return
                break
            self.answered[request_id] = answer.state
            self.times[request_id] = (started, time.monotonic())
            i += 1

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


def test_the_database_restarted_under_load_loses_nothing(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    mesh = Mesh(tmp_path, AGENTMESH_STORE=postgres_url)
    slow = {"AGENTMESH_SIM_LATENCY": "0.2", "AGENTMESH_SIM_SIGMA": "0"}
    seen: list[int] = []
    try:
        mesh.start_scheduler()
        for name in ("a", "b"):
            mesh.start_worker(name, backend="sim", metrics=True, **slow)
        mesh.wait_workers({"a", "b"})
        ports = {name: mesh.worker_metrics_port(name) for name in ("a", "b")}
        load = Load(mesh, callers=4)
        load.start()
        wait_for(lambda: len(load.answered) >= 8, 60, "requests answered before the outage")
        stopped = time.monotonic()
        postgres.stop()
        try:
            wait_for(lambda: health(mesh) != SERVING, 30, "the scheduler to stop serving")
            seen.append(health(mesh))
            down_metric = store_up(mesh)
            # The callers wait on their running requests; a new one is refused.
            refused = submit(mesh, "during-outage", timeout=5)
            # Down long enough for the writer to have retried, as it does in a real outage.
            wait_for(lambda: write_errors(mesh) >= 4, 30, "the writer to retry")
        finally:
            postgres.start()
        restarted = time.monotonic()
        wait_for(lambda: health(mesh) == SERVING, 30, "the scheduler to serve again")
        up_metric = store_up(mesh)
        done = len(load.answered)
        wait_for(lambda: len(load.answered) >= done + 8, 60, "requests answered after it")
        load.join()
        repeated = submit(mesh, "during-outage", timeout=30)
        completed = sum(completed_runs(port)[0] for port in ports.values())
        log = mesh.log("scheduler")
    finally:
        mesh.stop()

    ids = [*sorted(load.answered), "during-outage"]
    states = stored_states(postgres_url, ids)
    waited = [i for i, (s, e) in load.times.items() if s < stopped and e > restarted]
    lost = [i for i in ids if states.get(i) != "SUCCEEDED"]
    with psycopg.connect(postgres_url) as db:
        [(succeeded,)] = db.execute(
            "SELECT count(*) FROM subtasks WHERE record::jsonb ->> 'state' = 'SUCCEEDED'"
        ).fetchall()
    print(
        f"\ndatabase restarted under load: {len(ids)} requests answered, "
        f"{len(waited)} in flight through the outage (waited, then finished), "
        f"{len(load.refused) + 1} refused with STORE_UNAVAILABLE and then answered on a repeat, "
        f"{len(lost)} lost; outage {restarted - stopped:.1f} s; {succeeded} subtasks "
        f"succeeded, {completed} model calls completed ({completed - succeeded} twice)"
    )
    assert isinstance(refused, Unavailable) and refused.reason == "STORE_UNAVAILABLE"
    assert repeated is None and load.errors == []
    assert all(state == scheduler_pb2.REQUEST_STATE_SUCCEEDED for state in load.answered.values())
    assert lost == []
    assert completed == succeeded  # no subtask's model call completed twice
    assert load.refused <= set(ids)  # every refused id was answered on a repeat
    assert waited, "no request was in flight through the outage"
    assert seen[0] != SERVING and down_metric == 0 and up_metric == 1
    assert log.count("cannot write") == 1 and "can write again" in log
    assert PASSWORD not in log


def test_two_schedulers_starting_together_on_a_new_database_both_serve(
    tmp_path: Path, postgres_url: str
) -> None:
    """They migrate it once between them: one under the advisory lock, the other after it,
    finding nothing left to apply."""
    meshes = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        meshes.append(Mesh(tmp_path / name, AGENTMESH_STORE=postgres_url))
    try:
        for mesh in meshes:  # both started before either is waited for
            mesh._spawn("scheduler", ["scheduler"], mesh._scheduler_env)
        for mesh in meshes:
            mesh.ports("scheduler")  # fails at once if the scheduler exited
        logs = [mesh.log("scheduler") for mesh in meshes]
    finally:
        for mesh in meshes:
            mesh.stop()
    with psycopg.connect(postgres_url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in migrations()]
    assert sorted(log.count("migrated the request store") for log in logs) == [0, 1]
