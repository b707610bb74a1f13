"""S8 overload: plan fragments offloaded to workers when the scheduler saturates.

Requests are client-supplied plans of 5 simple steps in a chain (each
after the one before, the text flowing from the first step's summary), on 2
echo workers (`sim` over `echo`, latency 0, capacity 64) that run
fragments: the scheduler is the bottleneck. Two meshes run side by side,
identical but for `AGENTMESH_OFFLOAD`: `off` and `auto` (the default).

1. **Saturation**: a closed loop with many requests in flight on the `off`
   mesh gives the requests/s the scheduler completes when saturated.
2. **Overload**: an open loop offers twice that rate (Poisson arrivals,
   each request with a deadline) to each mesh in turn, in interleaved
   rounds. Measured per mesh: requests completed per second (answered
   SUCCEEDED), the scheduler's CPU per completed step, and the p95
   latency of the completed requests.
3. **Light load**: an open loop at a fifth of the saturation rate, where
   `auto` must not offload (its loop does not lag): the p50 latency of
   `auto` against `off`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2
from bench.harness import Cluster, Mesh, SchedulerCaller, sim_worker
from bench.stats import ScenarioResult, Target, median, ms, percentile, ratio

#: The chain's capabilities, in order: a summary, then four steps that read it.
STEPS = ("summarize", "sentiment", "detect_language", "extract_entities", "classify")
DATA = {"text": "Where is my order ORD-123456? It was due last week. Please help."}
VARIANTS = ("off", "auto")


@dataclass(frozen=True)
class Params:
    saturation_concurrency: int = 64
    """Requests in flight while finding the saturation rate."""
    saturation_seconds: float = 5.0
    overload_factor: float = 2.0
    light_factor: float = 0.2
    seconds: float = 6.0
    """Length of a measured round."""
    light_seconds: float = 6.0
    rounds: int = 2
    """Rounds per mesh and load, interleaved."""
    deadline: float = 2.0
    """Each request's deadline, seconds."""
    capacity: int = 64
    settle: float = 2.0
    """Seconds of rest before each measured round."""


FULL = Params()
SMOKE = Params(
    saturation_concurrency=16,
    saturation_seconds=0.7,
    seconds=0.7,
    light_seconds=0.7,
    rounds=1,
    settle=0.2,
)


def plan() -> plan_pb2.Plan:
    """A chain of 5 simple steps; every step after the first reads the first one's summary."""
    steps = [
        plan_pb2.PlanStep(
            id="s0",
            capability=STEPS[0],
            inputs={"text": plan_pb2.Binding(refs=["request.text"])},
        )
    ]
    for i, capability in enumerate(STEPS[1:], start=1):
        steps.append(
            plan_pb2.PlanStep(
                id=f"s{i}",
                capability=capability,
                inputs={"text": plan_pb2.Binding(refs=["steps.s0.summary", "request.text"])},
                depends_on=sorted({"s0", f"s{i - 1}"}),
            )
        )
    return plan_pb2.Plan(steps=steps, answer={"last": plan_pb2.Binding(refs=["steps.s4"])})


@dataclass(frozen=True)
class Outcome:
    latency: float
    ok: bool


Round = dict[str, float | None]


@dataclass(frozen=True)
class Measured:
    saturation: float
    """Requests/s the `off` mesh completes, saturated."""
    overload: dict[str, list[Round]]
    """Each variant's rounds at the overload rate."""
    light: dict[str, list[Round]]


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    meshes = {
        variant: Mesh(
            f"s8-{variant}",
            log_dir,
            [
                sim_worker(f"{variant}-{i}", latency=0.0, seed=seed + i, capacity=params.capacity)
                for i in (1, 2)
            ],
            env={"AGENTMESH_OFFLOAD": variant},
        )
        for variant in VARIANTS
    }
    with Cluster(list(meshes.values())):
        measured = asyncio.run(_measure(meshes, params, random.Random(seed)))
    return _result(measured, params)


async def _measure(meshes: dict[str, Mesh], params: Params, rng: random.Random) -> Measured:
    callers = {v: SchedulerCaller(m.target) for v, m in meshes.items()}
    the_plan = plan()
    try:
        # Warm both, then find the saturation rate of the `off` mesh.
        for variant in VARIANTS:
            await _closed_loop(callers[variant], the_plan, params, 8, 0.5)
        t0 = time.perf_counter()
        outcomes = await _closed_loop(
            callers["off"],
            the_plan,
            params,
            params.saturation_concurrency,
            params.saturation_seconds,
        )
        saturation = sum(o.ok for o in outcomes) / (time.perf_counter() - t0)
        overload: dict[str, list[Round]] = {v: [] for v in VARIANTS}
        light: dict[str, list[Round]] = {v: [] for v in VARIANTS}
        loads = (
            (light, saturation * params.light_factor, params.light_seconds),
            (overload, saturation * params.overload_factor, params.seconds),
        )
        for _ in range(params.rounds):
            for rounds, rate, seconds in loads:
                for variant in VARIANTS:
                    # Each round starts on a mesh at rest: no backlog, no lag left over.
                    await asyncio.sleep(params.settle)
                    rounds[variant].append(
                        await _open_round(
                            meshes[variant],
                            callers[variant],
                            the_plan,
                            params,
                            rate=rate,
                            seconds=seconds,
                            rng=rng,
                        )
                    )
        return Measured(saturation, overload, light)
    finally:
        for caller in callers.values():
            await caller.close()


async def _closed_loop(
    caller: SchedulerCaller,
    the_plan: plan_pb2.Plan,
    params: Params,
    concurrency: int,
    duration: float,
) -> list[Outcome]:
    end = time.perf_counter() + duration
    outcomes: list[Outcome] = []

    async def client() -> None:
        while time.perf_counter() < end:
            outcomes.append(await _request(caller, the_plan, params.deadline))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes


async def _open_round(
    mesh: Mesh,
    caller: SchedulerCaller,
    the_plan: plan_pb2.Plan,
    params: Params,
    *,
    rate: float,
    seconds: float,
    rng: random.Random,
) -> Round:
    """Poisson arrivals at `rate` for `seconds`; every request sent is waited for."""
    before = mesh.metrics()
    cpu0 = mesh.cpu_seconds()
    t0 = time.perf_counter()
    tasks: list[asyncio.Task[Outcome]] = []
    due = t0
    end = t0 + seconds
    while due < end:
        now = time.perf_counter()
        if now < due:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(_request(caller, the_plan, params.deadline)))
        due += rng.expovariate(rate)
    sent_for = time.perf_counter() - t0
    outcomes = await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu = mesh.cpu_seconds() - cpu0
    after = mesh.metrics()
    ok = [o.latency for o in outcomes if o.ok]
    offloaded = after.get("agentmesh_offloaded_steps_total", 0.0) - before.get(
        "agentmesh_offloaded_steps_total", 0.0
    )
    return {
        "offered_per_s": rate,
        "sent_per_s": len(outcomes) / sent_for,
        # Completed over the time requests were offered: what the mesh kept up with.
        "completed_per_s": len(ok) / sent_for,
        "failed": float(len(outcomes) - len(ok)),
        "scheduler_cpu_us_per_step": cpu / (len(ok) * len(STEPS)) * 1e6 if ok else None,
        "p50_ms": ms(percentile(ok, 0.5)),
        "p95_ms": ms(percentile(ok, 0.95)),
        "offloaded_share": offloaded / (len(ok) * len(STEPS)) if ok else None,
        "wall_s": wall,
    }


async def _request(caller: SchedulerCaller, the_plan: plan_pb2.Plan, deadline: float) -> Outcome:
    sent = time.perf_counter()
    try:
        request = await caller.submit(the_plan, DATA, timeout=deadline)
    except AgentmeshError:
        return Outcome(time.perf_counter() - sent, ok=False)
    return Outcome(
        time.perf_counter() - sent, ok=request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    )


def _result(measured: Measured, params: Params) -> ScenarioResult:
    saturation, overload, light = measured.saturation, measured.overload, measured.light

    def stat(rounds: dict[str, list[Round]], variant: str, key: str) -> float | None:
        return median(r[key] for r in rounds[variant])

    metrics: dict[str, object] = {"saturation_requests_per_s": saturation}
    for load, rounds in (("overload", overload), ("light", light)):
        for variant in VARIANTS:
            metrics[f"{load}_{variant}"] = {
                key: stat(rounds, variant, key) for key in rounds[variant][0]
            }
    completed = ratio(
        stat(overload, "auto", "completed_per_s"), stat(overload, "off", "completed_per_s")
    )
    cpu = ratio(
        stat(overload, "auto", "scheduler_cpu_us_per_step"),
        stat(overload, "off", "scheduler_cpu_us_per_step"),
    )
    p95 = ratio(stat(overload, "auto", "p95_ms"), stat(overload, "off", "p95_ms"))
    light_p50 = ratio(stat(light, "auto", "p50_ms"), stat(light, "off", "p50_ms"))
    light_change = None if light_p50 is None else abs(light_p50 - 1.0)
    metrics.update(
        {
            "overload_completed_ratio": completed,
            "overload_cpu_per_step_ratio": cpu,
            "overload_p95_ratio": p95,
            "light_p50_ratio": light_p50,
            "machine_cpus": os.cpu_count(),
        }
    )
    return ScenarioResult(
        key="S8",
        title=(
            f"Overload: chains of {len(STEPS)} simple steps at {params.overload_factor:g}× the "
            "scheduler's saturation, offload off vs auto"
        ),
        metrics=metrics,
        targets={
            "completed_auto_vs_off": Target(completed, 1.5, ">=", "×"),
            "cpu_per_step_auto_vs_off": Target(cpu, 0.5, "<=", "×"),
            "p95_auto_vs_off": Target(p95, 1.0, "<=", "×"),
            "light_load_p50_change": Target(light_change, 0.05, "<=", ""),
        },
        notes=[
            "Two meshes side by side (scheduler with its SQLite store, 2 echo workers of 64 "
            "slots that run fragments), identical but for AGENTMESH_OFFLOAD (off, auto).",
            "Saturation: a closed loop of "
            f"{params.saturation_concurrency} requests in flight on the `off` mesh. Overload: "
            f"Poisson arrivals at {params.overload_factor:g}× that rate; light load at "
            f"{params.light_factor:g}×; {params.rounds} interleaved rounds of "
            f"{params.seconds:g} s per mesh and load, each after {params.settle:g} s of rest; "
            "medians over rounds.",
            f"Every request has a {params.deadline:g} s deadline; completed = answered "
            "SUCCEEDED, per second of offered load; CPU per step = the scheduler's CPU "
            "seconds over the round per completed step.",
            "light_load_p50_change = |p50(auto) / p50(off) − 1| at light load, where auto "
            "should not offload (offloaded_share in the metrics).",
        ],
    )
