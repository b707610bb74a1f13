"""S2 throughput: subtasks per second through one scheduler process, and its CPU per subtask.

Requests are client-supplied plans of 7 independent no-op steps (the
support workflow's seven skills, each on the request's text), served by 2
echo workers (`sim` over `echo`, latency 0, capacity 64 each so that worker
slots never limit). Many concurrent asyncio clients in the benchmark
process keep the scheduler saturated (closed loop). The scheduler's CPU time
comes from /proc/<pid>/stat before and after each measured round.

The targets are measured on the scheduler as deployed (its durable SQLite
store on). The same load on a second scheduler with `AGENTMESH_STORE=""`
(requests in memory only), and on a third with its store in PostgreSQL (a
private PostgreSQL 15 server the benchmark starts on 127.0.0.1, with its
default durability: every commit flushed), interleaved round by round,
shows what each store costs. For scale, the same closed loop also calls one echo worker's Execute
directly, with no scheduler: the CPU one gRPC call costs its caller and its
server. The scheduler pays that once per subtask (it calls Execute) plus a
seventh (it serves one Submit per seven subtasks).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from agentmesh.v1 import plan_pb2
from bench.harness import (
    Cluster,
    Mesh,
    SchedulerCaller,
    WorkerCaller,
    process_cpu_seconds,
    sim_worker,
)
from bench.load import Call, closed_loop, rounds
from bench.stats import ScenarioResult, Target, median, ratio
from tests.support.postgres import PostgresServer

#: The seven skills of the support workflow, each one no-op step on the request's text.
STEPS = (
    "extract_entities",
    "detect_language",
    "sentiment",
    "summarize",
    "classify",
    "draft_reply",
    "translate",
)
DATA = {"text": "Where is my order ORD-123456? It was due last week."}


def plan() -> plan_pb2.Plan:
    """Seven independent steps: all of them ready at once."""
    steps = []
    for capability in STEPS:
        inputs = {"text": plan_pb2.Binding(refs=["request.text"])}
        if capability == "translate":
            binding = plan_pb2.Binding()
            binding.value.string_value = "de"
            inputs["target_language"] = binding
        steps.append(plan_pb2.PlanStep(id=capability, capability=capability, inputs=inputs))
    return plan_pb2.Plan(steps=steps)


@dataclass(frozen=True)
class Params:
    concurrency: int = 48
    """Requests in flight at once, from the benchmark's asyncio clients."""
    warmup: float = 2.0
    """Seconds of load before the first measured round."""
    seconds: float = 6.0
    """Length of a measured round."""
    rounds: int = 3
    capacity: int = 64
    """Slots per echo worker."""


FULL = Params()
SMOKE = Params(concurrency=8, warmup=0.3, seconds=0.7, rounds=1)

#: The variants: the default durable store, requests kept in memory only, and the store
#: in a PostgreSQL database.
STORES = ("sqlite_store", "memory_store", "postgresql_store")
DEFAULT = "sqlite_store"
#: The PostgreSQL server's settings: its defaults (fsync and synchronous_commit on), as a
#: deployment keeps them.
POSTGRES_SETTINGS: dict[str, str] = {}

Round = dict[str, float | None]


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    postgres = PostgresServer(POSTGRES_SETTINGS)
    try:
        postgres.start()
        stores = {
            "sqlite_store": {},
            "memory_store": {"AGENTMESH_STORE": ""},
            "postgresql_store": {"AGENTMESH_STORE": postgres.url(postgres.create_database())},
        }
        meshes = {
            variant: Mesh(
                f"s2-{variant}",
                log_dir,
                [
                    sim_worker(f"echo-{i}", latency=0.0, seed=seed + i, capacity=params.capacity)
                    for i in (1, 2)
                ],
                env=stores[variant],
            )
            for variant in STORES
        }
        database = {"postgresql_store": postgres.pid}
        with Cluster(list(meshes.values())):
            measured = asyncio.run(_measure(meshes, params, database))
            floor = asyncio.run(_grpc_floor(meshes[DEFAULT], params))
    finally:
        postgres.close()

    def stat(variant: str, key: str) -> float | None:
        return median(r[key] for r in measured[variant])

    metrics: dict[str, object] = {}
    for variant in STORES:
        metrics[variant] = {
            "subtasks_per_s": stat(variant, "subtasks_per_s"),
            "scheduler_cpu_us_per_subtask": stat(variant, "scheduler_cpu_us_per_subtask"),
            "worker_cpu_us_per_subtask": stat(variant, "worker_cpu_us_per_subtask"),
            "scheduler_cpu_utilisation": stat(variant, "scheduler_cpu_share"),
            "workers_cpu_utilisation": stat(variant, "workers_cpu_share"),
            "client_cpu_utilisation": stat(variant, "client_cpu_share"),
            # The PostgreSQL server's processes (its backends included); none for the others.
            "database_cpu_utilisation": stat(variant, "database_cpu_share"),
            "database_cpu_us_per_subtask": stat(variant, "database_cpu_us_per_subtask"),
            "failed_requests": sum(int(r["failed"] or 0) for r in measured[variant]),
        }
    rate = stat(DEFAULT, "subtasks_per_s")
    cpu = stat(DEFAULT, "scheduler_cpu_us_per_subtask")
    worker_cpu = stat(DEFAULT, "worker_cpu_us_per_subtask")
    metrics.update(
        {
            "subtasks_per_s": rate,
            "requests_per_s": stat(DEFAULT, "requests_per_s"),
            "scheduler_cpu_us_per_subtask": cpu,
            "worker_cpu_us_per_subtask": worker_cpu,
            "subtasks_per_s_by_round": [r["subtasks_per_s"] for r in measured[DEFAULT]],
            "memory_vs_sqlite_store_throughput": ratio(
                stat("memory_store", "subtasks_per_s"), rate
            ),
            "postgresql_vs_sqlite_store_throughput": ratio(
                stat("postgresql_store", "subtasks_per_s"), rate
            ),
            "concurrency": params.concurrency,
            "machine_cpus": os.cpu_count(),
            **floor,
        }
    )
    return ScenarioResult(
        key="S2",
        title="Throughput: 7-subtask requests over 2 echo workers, scheduler saturated",
        metrics=metrics,
        targets={
            "subtasks_per_s": Target(rate, 4000.0, ">=", "/s"),
            "scheduler_cpu_us_per_subtask": Target(cpu, 200.0, "<=", "µs"),
            "worker_cpu_us_per_subtask": Target(worker_cpu, 150.0, "<=", "µs"),
        },
        notes=[
            "Clients, scheduler and both workers share this machine's CPUs; utilisations are "
            "CPU seconds per wall second (1.0 = one core busy).",
            f"{params.concurrency} requests in flight; {params.rounds} rounds of "
            f"{params.seconds:g} s per variant, interleaved; medians over rounds.",
            "grpc_execute_*: the same closed loop calling one echo worker's Execute directly "
            "(no scheduler); grpc_floor_cpu_us_per_subtask = client + server / 7, what the "
            "scheduler's gRPC calls alone cost per subtask at best.",
        ],
    )


async def _measure(
    meshes: dict[str, Mesh], params: Params, database: dict[str, int]
) -> dict[str, list[Round]]:
    callers = {v: SchedulerCaller(m.target) for v, m in meshes.items()}
    the_plan = plan()

    def call_for(variant: str) -> Call:
        async def call() -> int:
            # Submit's default (BASIC) view, as a client that wants the answer: no plan and
            # no subtasks, so no attempts either; the round counts successes only.
            await callers[variant].submit(the_plan, DATA, timeout=30.0)
            return 1

        return call

    measured: dict[str, list[Round]] = {v: [] for v in meshes}
    try:
        for variant in meshes:
            await closed_loop(call_for(variant), params.concurrency, params.warmup)
        for order in rounds(list(meshes), params.rounds):
            for variant in order:
                one = await measure_round(
                    meshes[variant], call_for(variant), params, database.get(variant)
                )
                measured[variant].append(one)
        return measured
    finally:
        for caller in callers.values():
            await caller.close()


async def measure_round(
    mesh: Mesh, call: Call, params: Params, database: int | None = None
) -> Round:
    """One measured round of closed-loop load, with the processes' CPU time (and the
    database server's, given its pid)."""
    worker_pids = [p.pid for n, p in mesh.processes.items() if n != "scheduler"]
    db0 = tree_cpu_seconds(database) if database else 0.0
    cpu0 = mesh.cpu_seconds()
    workers0 = sum(process_cpu_seconds(p) for p in worker_pids)
    client0 = time.process_time()
    t0 = time.perf_counter()
    samples = await closed_loop(call, params.concurrency, params.seconds)
    wall = time.perf_counter() - t0
    cpu = mesh.cpu_seconds() - cpu0
    workers = sum(process_cpu_seconds(p) for p in worker_pids) - workers0
    client = time.process_time() - client0
    db = tree_cpu_seconds(database) - db0 if database else None
    ok = sum(1 for s in samples if s.ok)
    subtasks = ok * len(STEPS)
    return {
        "subtasks_per_s": subtasks / wall,
        "requests_per_s": ok / wall,
        "scheduler_cpu_us_per_subtask": cpu / subtasks * 1e6 if subtasks else None,
        # Both workers' CPU, per subtask: each subtask runs on one of them.
        "worker_cpu_us_per_subtask": workers / subtasks * 1e6 if subtasks else None,
        "scheduler_cpu_share": cpu / wall,
        "workers_cpu_share": workers / wall,
        "client_cpu_share": client / wall,
        "database_cpu_share": db / wall if db is not None else None,
        "database_cpu_us_per_subtask": db / subtasks * 1e6 if db is not None and subtasks else None,
        "failed": len(samples) - ok,
    }


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and its descendants (a PostgreSQL server and its backends)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        parents[int(stat.parent.name)] = int(after_name[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for pid in tree:
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            pass
    return total


async def _grpc_floor(mesh: Mesh, params: Params) -> dict[str, float | None]:
    """CPU µs per direct Execute call: the caller's (this process) and the worker's."""
    name, address = next(iter(sorted(mesh.worker_addresses().items())))
    worker_pid = mesh.processes[name].pid
    caller = WorkerCaller(address)

    async def call() -> int:
        await caller.execute(STEPS[0], DATA, timeout=30.0)
        return 1

    try:
        await closed_loop(call, params.concurrency, params.warmup)
        client0, server0 = time.process_time(), process_cpu_seconds(worker_pid)
        samples = await closed_loop(call, params.concurrency, params.seconds)
        client = time.process_time() - client0
        server = process_cpu_seconds(worker_pid) - server0
    finally:
        await caller.close()
    calls = sum(1 for s in samples if s.ok)
    if not calls:
        return {"grpc_execute_client_cpu_us": None, "grpc_execute_server_cpu_us": None}
    client_us, server_us = client / calls * 1e6, server / calls * 1e6
    return {
        "grpc_execute_client_cpu_us": client_us,
        "grpc_execute_server_cpu_us": server_us,
        "grpc_floor_cpu_us_per_subtask": client_us + server_us / len(STEPS),
    }
