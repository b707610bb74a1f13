"""S7 fan-out at moderate load: the queueing the mesh itself adds when it is not saturated.

Requests are client-supplied plans of 5 independent steps. The client
draws each step's latency (exponential, mean 30 ms, seeded) and sends it in
the step's input as `sim_latency_ms`: the `sim` worker sleeps exactly that
long (agentmesh.agents.simulated.LATENCY_FIELD). A request cannot answer
before its slowest step, so its **ideal** latency is known exactly: the
largest of its five draws. 16 concurrent asyncio clients in the benchmark
process keep 16 requests in flight (closed loop) on 2 sim workers with 64
slots each: at most 80 subtasks in flight for 128 slots, so no step ever
waits for a worker slot, and whatever a request takes beyond its ideal is
the mesh's own (the client, the gRPC hops, the scheduler's queues and
dispatch, the worker's runtime).

The targets compare percentiles of the latency with percentiles of the
ideal in each round (p50 and p95 of each, over the round's successful
requests), then take the median over rounds. The same rounds also give the
percentiles of each request's own excess (latency − ideal), where that
excess arises (inside the scheduler, between its record's `created_at` and
`finished_at`, or outside it; and each subtask's time in the scheduler past
its sleep), and the CPU all four processes (scheduler, two workers, the
benchmark's client) spend per request, from /proc/<pid>/stat and the
client's own process time.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentmesh.agents.simulated import LATENCY_FIELD
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2
from bench.harness import Cluster, Mesh, SchedulerCaller, process_cpu_seconds, sim_worker
from bench.stats import ScenarioResult, Target, median, ms, percentile

#: Five of the support workflow's skills, one independent step each.
STEPS = ("extract_entities", "detect_language", "sentiment", "summarize", "classify")
DATA = {"text": "Where is my order ORD-123456? It was due last week."}
P50_GOAL_MS = 3.0
P95_GOAL_MS = 8.0


@dataclass(frozen=True)
class Params:
    concurrency: int = 16
    """Requests in flight at once, from the benchmark's asyncio clients."""
    mean_latency: float = 0.030
    """Mean of each step's exponential latency, seconds."""
    capacity: int = 64
    """Slots per sim worker: more than all the steps in flight."""
    warmup: float = 2.0
    """Seconds of load before the first measured round."""
    seconds: float = 8.0
    """Length of a measured round."""
    rounds: int = 3
    deadline: float = 30.0
    """Each Submit's deadline, seconds."""


FULL = Params()
SMOKE = Params(concurrency=8, warmup=0.3, seconds=0.7, rounds=1)


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it, with what its plan asked of the workers."""

    latency: float
    """Seconds from sending Submit to its answer (or error)."""
    ideal: float
    """Its slowest step's latency, seconds: the soonest it could have answered."""
    ok: bool
    in_scheduler: float = 0.0
    """Seconds between the scheduler's created_at and finished_at of the request."""
    subtask_excess: tuple[float, ...] = ()
    """Each step's duration in the scheduler (queued to answered) less its latency, seconds."""


def plan(latencies_ms: Sequence[float]) -> plan_pb2.Plan:
    """One independent step per skill, each told how long its simulated model takes."""
    steps = []
    for capability, latency_ms in zip(STEPS, latencies_ms, strict=True):
        delay = plan_pb2.Binding()
        delay.value.number_value = latency_ms
        inputs = {"text": plan_pb2.Binding(refs=["request.text"]), LATENCY_FIELD: delay}
        steps.append(plan_pb2.PlanStep(id=capability, capability=capability, inputs=inputs))
    return plan_pb2.Plan(steps=steps)


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    workers = [
        sim_worker(f"sim-{i}", latency=params.mean_latency, seed=seed + i, capacity=params.capacity)
        for i in (1, 2)
    ]
    mesh = Mesh("s7-fanout", log_dir, workers)
    with Cluster([mesh]):
        rounds, pooled = asyncio.run(_measure(mesh, params, random.Random(seed)))

    def stat(key: str) -> float | None:
        return median(r[key] for r in rounds)

    p50_excess, p95_excess = stat("p50_excess_ms"), stat("p95_excess_ms")
    metrics: dict[str, object] = {
        "p50_excess_ms": p50_excess,
        "p95_excess_ms": p95_excess,
        "p95_excess_ms_by_round": [r["p95_excess_ms"] for r in rounds],
    }
    metrics.update(
        (name, stat(name))
        for name in (
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "ideal_p50_ms",
            "ideal_p95_ms",
            "ideal_p99_ms",
            "excess_p50_ms",
            "excess_p95_ms",
            "excess_p99_ms",
            "requests_per_s",
            "subtasks_per_s",
            "cpu_ms_per_request",
            "scheduler_cpu_ms_per_request",
            "workers_cpu_ms_per_request",
            "client_cpu_ms_per_request",
            "cpu_utilisation",
            "in_scheduler_excess_p50_ms",
            "in_scheduler_excess_p95_ms",
            "outside_scheduler_p50_ms",
            "outside_scheduler_p95_ms",
            "subtask_excess_p50_ms",
            "subtask_excess_p95_ms",
        )
    )
    metrics.update(
        {
            "requests": sum(int(r["requests"] or 0) for r in rounds),
            "failed_requests": sum(int(r["failed"] or 0) for r in rounds),
            "concurrency": params.concurrency,
            "machine_cpus": os.cpu_count(),
        }
    )
    return ScenarioResult(
        key="S7",
        title=(
            f"Fan-out at moderate load: {params.concurrency} requests of {len(STEPS)} parallel "
            f"steps (exponential, mean {params.mean_latency * 1000:g} ms) on 2 roomy sim workers"
        ),
        metrics=metrics,
        targets={
            "p50_excess_ms": Target(p50_excess, P50_GOAL_MS, "<=", "ms"),
            "p95_excess_ms": Target(p95_excess, P95_GOAL_MS, "<=", "ms"),
        },
        notes=[
            "The ideal of a request is its slowest step's sim_latency_ms, drawn by the client: "
            "the soonest it could answer.",
            "p50_excess_ms = p50(latency) − p50(ideal) and p95_excess_ms = p95(latency) − "
            "p95(ideal): percentiles over one round's successful requests, the difference per "
            "round, the median over rounds. excess_p50/p95/p99_ms are percentiles of each "
            "request's own latency − ideal (per round, median over rounds).",
            "in_scheduler_excess: the scheduler's finished_at − created_at, less the ideal; "
            "outside_scheduler: the client's latency less finished_at − created_at (client, "
            "Submit's gRPC hop, admission); subtask_excess: each step's duration in the "
            "scheduler (queued to answered) less its sim_latency_ms.",
            "CPU per request: user + system seconds of the scheduler and both workers "
            "(/proc/<pid>/stat) and of the benchmark process (the client), over a round, per "
            "successful request; cpu_utilisation is all of it per wall second (1.0 = one core).",
            f"{params.concurrency} requests in flight, closed loop; {params.rounds} rounds of "
            f"{params.seconds:g} s after {params.warmup:g} s of warm-up; medians over rounds.",
        ],
        latencies={
            f"S7 fan-out ({params.concurrency} in flight)": {
                "request": [o.latency for o in pooled],
                "ideal (slowest step)": [o.ideal for o in pooled],
            }
        },
    )


Round = dict[str, float | None]


async def _measure(
    mesh: Mesh, params: Params, rng: random.Random
) -> tuple[list[Round], list[Outcome]]:
    caller = SchedulerCaller(mesh.target)
    worker_pids = [p.pid for n, p in mesh.processes.items() if n != "scheduler"]
    measured: list[Round] = []
    pooled: list[Outcome] = []
    try:
        await _closed_loop(caller, rng, params, params.warmup)
        for _ in range(params.rounds):
            cpu0 = mesh.cpu_seconds()
            workers0 = sum(process_cpu_seconds(p) for p in worker_pids)
            client0 = time.process_time()
            t0 = time.perf_counter()
            outcomes = await _closed_loop(caller, rng, params, params.seconds)
            wall = time.perf_counter() - t0
            cpu = {
                "scheduler": mesh.cpu_seconds() - cpu0,
                "workers": sum(process_cpu_seconds(p) for p in worker_pids) - workers0,
                "client": time.process_time() - client0,
            }
            measured.append(_round_stats(outcomes, wall, cpu))
            pooled.extend(o for o in outcomes if o.ok)
        return measured, pooled
    finally:
        await caller.close()


async def _closed_loop(
    caller: SchedulerCaller, rng: random.Random, params: Params, duration: float
) -> list[Outcome]:
    """`params.concurrency` clients, each sending its next request when the last answered."""
    end = time.perf_counter() + duration
    outcomes: list[Outcome] = []

    async def client() -> None:
        while time.perf_counter() < end:
            outcomes.append(await _request(caller, rng, params))

    await asyncio.gather(*(client() for _ in range(params.concurrency)))
    return outcomes


async def _request(caller: SchedulerCaller, rng: random.Random, params: Params) -> Outcome:
    latencies_ms = [rng.expovariate(1.0 / params.mean_latency) * 1000.0 for _ in STEPS]
    ideal = max(latencies_ms) / 1000.0
    the_plan = plan(latencies_ms)
    sent = time.perf_counter()
    try:
        # FULL: each subtask's duration, against the latency it was asked for.
        request = await caller.submit(
            the_plan, DATA, timeout=params.deadline, view=scheduler_pb2.REQUEST_VIEW_FULL
        )
    except AgentmeshError:
        return Outcome(time.perf_counter() - sent, ideal, ok=False)
    latency = time.perf_counter() - sent
    if request.state != scheduler_pb2.REQUEST_STATE_SUCCEEDED:
        return Outcome(latency, ideal, ok=False)
    asked = dict(zip(STEPS, latencies_ms, strict=True))
    created, finished = request.created_at, request.finished_at
    return Outcome(
        latency,
        ideal,
        ok=True,
        in_scheduler=(finished.ToNanoseconds() - created.ToNanoseconds()) / 1e9,
        subtask_excess=tuple(
            s.duration.ToNanoseconds() / 1e9 - asked[s.id] / 1000.0 for s in request.subtasks
        ),
    )


#: Per-request series (seconds) whose percentiles a round reports, by metric prefix, with
#: the percentiles wanted: what the client saw, the ideal, and the excess and its parts.
SERIES: dict[str, tuple[Callable[[Outcome], float], tuple[int, ...]]] = {
    "": (lambda o: o.latency, (50, 95, 99)),
    "ideal_": (lambda o: o.ideal, (50, 95, 99)),
    "excess_": (lambda o: o.latency - o.ideal, (50, 95, 99)),
    "in_scheduler_excess_": (lambda o: o.in_scheduler - o.ideal, (50, 95)),
    "outside_scheduler_": (lambda o: o.latency - o.in_scheduler, (50, 95)),
}


def _round_stats(outcomes: Sequence[Outcome], wall: float, cpu: dict[str, float]) -> Round:
    """One round's percentiles (ms), rates, the targets' differences and CPU per request."""
    ok = [o for o in outcomes if o.ok]
    steps = [e for o in ok for e in o.subtask_excess]
    stats: Round = {
        "requests": len(ok),
        "failed": len(outcomes) - len(ok),
        "requests_per_s": len(ok) / wall,
        "subtasks_per_s": len(steps) / wall,
        "subtask_excess_p50_ms": ms(percentile(steps, 0.5)),
        "subtask_excess_p95_ms": ms(percentile(steps, 0.95)),
        "cpu_utilisation": sum(cpu.values()) / wall,
    }
    for prefix, (value, quantiles) in SERIES.items():
        for q in quantiles:
            stats[f"{prefix}p{q}_ms"] = ms(percentile((value(o) for o in ok), q / 100))
    for q in (50, 95):
        # The targets: a difference of percentiles, not a percentile of differences.
        latency, ideal = stats[f"p{q}_ms"], stats[f"ideal_p{q}_ms"]
        stats[f"p{q}_excess_ms"] = None if latency is None or ideal is None else latency - ideal
    total = sum(cpu.values())
    stats["cpu_ms_per_request"] = total / len(ok) * 1000.0 if ok else None
    for part, seconds in cpu.items():
        stats[f"{part}_cpu_ms_per_request"] = seconds / len(ok) * 1000.0 if ok else None
    return stats
