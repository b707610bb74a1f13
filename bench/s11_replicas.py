"""S11 replicas: several schedulers over one PostgreSQL database; throughput and failover.

Real processes on this machine: a private PostgreSQL 15 server
(tests/support/postgres.py, its default durability), scheduler replicas
sharing one database, and two `sim` workers registered with every replica.

- **Throughput** with 1, 2 and 3 replicas: the S2 plan (seven independent
  no-op steps) sent by closed-loop asyncio clients spread evenly over the
  replicas, subtasks per second over a measured window. On a machine of few
  cores the replicas, the workers, the database and the clients share them:
  the figure says what a replica costs here, not what separate machines give.
- **Failover**: a replica owning requests under way is SIGKILLed; the time
  from the kill to the first subtask of one of its requests finished by the
  survivor (read from the database: a subtask row written SUCCEEDED that was
  not at the kill), and to its takeover (the request's owner changed), over
  `kills` kills, p50 and max. The killed replica is started again on its
  port between kills. It is bounded below by the lease (AGENTMESH_LEASE,
  5 s by default): the survivor may claim only an expired lease.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from agentmesh.errors import AgentmeshError
from bench.harness import SchedulerCaller
from bench.load import closed_loop
from bench.s2_throughput import DATA, STEPS, plan
from bench.stats import ScenarioResult, Target, median, percentile
from tests.support.postgres import PostgresServer

# The tests' helper that runs replicas and workers, by name: the project's type check covers
# the packages and the benchmarks, not the tests' helpers.
ReplicaMesh: Any = importlib.import_module("tests.support.replicas").ReplicaMesh

TICKET = {"text": "My order ORD-123456 arrived broken; I want a refund or a new one."}


@dataclass(frozen=True)
class Params:
    concurrency: int = 24
    """Requests in flight at once, spread over the replicas."""
    warmup: float = 1.5
    seconds: float = 5.0
    """Length of the measured window per replica count."""
    replicas: tuple[int, ...] = (1, 2, 3)
    kills: int = 10
    lease: float = 5.0
    """AGENTMESH_LEASE of the failover runs: the default."""
    step_latency: float = 0.4
    """Seconds a subtask takes in the failover runs (requests stay under way)."""


FULL = Params()
SMOKE = Params(concurrency=6, warmup=0.3, seconds=1.0, replicas=(1, 2), kills=2, lease=1.0)


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    postgres = PostgresServer()
    try:
        postgres.start()
        rates = {
            n: _throughput(postgres, log_dir / f"s11-{n}", n, params, seed) for n in params.replicas
        }
        failover = _failovers(postgres, log_dir / "s11-failover", params)
    finally:
        postgres.close()
    first = [f["first_subtask"] for f in failover if f["first_subtask"] is not None]
    taken = [f["takeover"] for f in failover if f["takeover"] is not None]
    one = rates[params.replicas[0]]
    metrics: dict[str, object] = {
        **{f"subtasks_per_s_{n}_replicas": r for n, r in rates.items()},
        **{
            f"scaling_{n}_vs_1": (r / one if one else None)
            for n, r in rates.items()
            if n != params.replicas[0]
        },
        "failover_s_p50": median(first),
        "failover_s_max": max(first, default=None),
        "takeover_s_p50": median(taken),
        "takeover_s_max": max(taken, default=None),
        "failover_s_each": [round(x, 3) for x in first],
        "kills": len(failover),
        "requests_lost": sum(f["lost"] for f in failover),
        "lease_s": params.lease,
        "concurrency": params.concurrency,
    }
    return ScenarioResult(
        key="S11",
        title="Scheduler replicas on one PostgreSQL store: throughput, and failover on a kill",
        metrics=metrics,
        targets={
            "failover_s_max": Target(
                max(first, default=None),
                params.lease + 3.0,
                "<=",
                "s",
                note="the lease, the takeover check (1 s) and the resumed subtask's own time",
            ),
            "requests_lost": Target(float(metrics["requests_lost"]), 0.0, "<=", ""),  # type: ignore[arg-type]
        },
        notes=[
            f"{len(failover)} kills with AGENTMESH_LEASE={params.lease} s; subtasks of "
            f"{params.step_latency} s; failover p95 {_round(percentile(first, 0.95))} s"
        ],
    )


def _throughput(
    postgres: PostgresServer, log_dir: Path, replicas: int, params: Params, seed: int
) -> float:
    log_dir.mkdir(parents=True, exist_ok=True)
    mesh = ReplicaMesh(log_dir, postgres.url(postgres.create_database()))
    try:
        mesh.start_replicas(replicas)
        for i in (1, 2):
            mesh.start_worker(
                f"echo-{i}",
                backend="sim",
                AGENTMESH_SIM_INNER="echo",
                AGENTMESH_SIM_LATENCY="0",
                AGENTMESH_SIM_SEED=str(seed + i),
                AGENTMESH_CAPACITY="64",
            )
        mesh.wait_workers({"echo-1", "echo-2"})
        return asyncio.run(_load(list(mesh.replicas.values()), params))
    finally:
        mesh.stop()


async def _load(targets: list[str], params: Params) -> float:
    callers = [SchedulerCaller(t) for t in targets]
    turn = itertools.cycle(callers)
    the_plan = plan()

    async def call() -> int:
        await next(turn).submit(the_plan, DATA, timeout=30)
        return 1

    await closed_loop(call, params.concurrency, params.warmup)
    samples = await closed_loop(call, params.concurrency, params.seconds)
    for caller in callers:
        await caller.close()
    done = sum(1 for s in samples if s.ok)
    return done * len(STEPS) / params.seconds


def _failovers(postgres: PostgresServer, log_dir: Path, params: Params) -> list[dict[str, float]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    url = postgres.url(postgres.create_database())
    mesh = ReplicaMesh(log_dir, url, lease=params.lease)
    results = []
    try:
        mesh.start_replicas(2)
        for i in (1, 2):
            mesh.start_worker(
                f"w{i}",
                backend="sim",
                AGENTMESH_SIM_LATENCY=repr(params.step_latency),
                AGENTMESH_SIM_SIGMA="0",
                AGENTMESH_CAPACITY="16",
            )
        mesh.wait_workers({"w1", "w2"})
        for kill in range(params.kills):
            results.append(_one_kill(mesh, url, kill))
    finally:
        mesh.stop()
    return results


def _one_kill(mesh: Any, url: str, kill: int) -> dict[str, float]:
    ids = [f"k{kill}-{i}" for i in range(4)]
    for request_id in ids:
        threading.Thread(target=_submit, args=(mesh, request_id), daemon=True).start()

    def under_way() -> bool | None:
        """Every request has a subtask finished and is still running."""
        done, states = _succeeded(url, ids), _states(url, ids)
        running = all(states.get(r) == "RUNNING" and done.get(r, 0) > 0 for r in ids)
        return True if running else None

    _wait(under_way, 30)
    at_kill = _succeeded(url, ids)
    mesh.kill("s1")
    killed = time.monotonic()
    takeover = first = None
    while first is None and time.monotonic() - killed < 60:
        owners = _owners(url, ids)
        if takeover is None and any(o == "s2" for o in owners.values()):
            takeover = time.monotonic() - killed
        now = _succeeded(url, ids)
        if any(now.get(r, 0) > at_kill.get(r, 0) for r in ids):
            first = time.monotonic() - killed
        time.sleep(0.01)
    _wait(lambda: all(s == "SUCCEEDED" for s in _states(url, ids).values()) or None, 60)
    states = _states(url, ids)
    mesh.start_replica("s1")  # again, on its port: the workers find it
    mesh.wait_workers({"w1", "w2"})
    return {
        "takeover": takeover,  # type: ignore[dict-item]
        "first_subtask": first,  # type: ignore[dict-item]
        "lost": sum(1 for s in states.values() if s != "SUCCEEDED"),
    }


def _submit(mesh: Any, request_id: str) -> None:
    # The caller of the killed replica asks the other under the same id.
    for replica in ("s1", "s2"):
        try:
            mesh.clients[replica].submit(
                "support_ticket", TICKET, request_id=request_id, timeout=90
            )
            return
        except AgentmeshError:
            continue


def _wait(condition, timeout: float) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (found := condition()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("S11: timed out waiting for the requests")
        time.sleep(0.02)
    return found


def _query(url: str, sql: str, ids: list[str]) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(sql, (ids,)).fetchall()


def _succeeded(url: str, ids: list[str]) -> dict[str, int]:
    rows = _query(
        url,
        "SELECT request_id, record FROM subtasks WHERE request_id = ANY(%s)",
        ids,
    )
    counts: dict[str, int] = {}
    for request_id, record in rows:
        if json.loads(str(record))["state"] == "SUCCEEDED":
            counts[str(request_id)] = counts.get(str(request_id), 0) + 1
    return counts


def _owners(url: str, ids: list[str]) -> dict[str, str]:
    rows = _query(url, "SELECT request_id, owner FROM requests WHERE request_id = ANY(%s)", ids)
    return {str(r): str(o) for r, o in rows}


def _states(url: str, ids: list[str]) -> dict[str, str]:
    rows = _query(url, "SELECT request_id, state FROM requests WHERE request_id = ANY(%s)", ids)
    return {str(r): str(s) for r, s in rows}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
