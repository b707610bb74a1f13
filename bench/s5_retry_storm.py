"""S5 retry storm: one of four workers answers UNAVAILABLE for a window, at 60% load.

Four equal `sim` workers (median 100 ms, capacity 4); one of them has
`AGENTMESH_SIM_OUTAGE="start,end"`, seconds after its backend starts, in
which every call fails (after its usual latency). Open-loop Poisson
Dispatch calls at 60% of capacity run from before the window to after it.
Attempts per subtask come from the scheduler's own attempt counter
(`agentmesh_subtask_attempt_duration_seconds_count`, read before and after)
over the Dispatch calls sent; a request is within its deadline when it
answered OK in no more than the deadline it was sent with.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Cluster, Mesh, SchedulerCaller, sim_worker
from bench.load import Sample, open_loop, poisson_arrivals
from bench.stats import ScenarioResult, Target, ms, percentile, ratio

CAPABILITY = "summarize"
DATA = {"text": "The screen flickers since the last update. Please help."}
ATTEMPTS = "agentmesh_subtask_attempt_duration_seconds_count"
RETRIES = "agentmesh_subtask_retries_total"
REFUSED = "agentmesh_subtask_retries_refused_total"


@dataclass(frozen=True)
class Params:
    latency: float = 0.1
    """Median latency of every worker, seconds (σ 0.25)."""
    capacity: int = 4
    workers: int = 4
    load: float = 0.6
    outage: tuple[float, float] = (8.0, 16.0)
    """The failing worker's outage, seconds after it starts: late enough for a busy
    machine to have started the mesh first."""
    after: float = 4.0
    """Seconds of load after the outage ends."""
    deadline: float = 2.0
    """Deadline of every call, seconds: 20 median latencies."""

    def capacity_per_s(self) -> float:
        return self.workers * self.capacity / (self.latency * math.exp(0.25**2 / 2))


FULL = Params()
SMOKE = Params(outage=(8.0, 9.0), after=0.5)


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    start, end = params.outage
    specs = [
        sim_worker(f"steady-{i}", latency=params.latency, seed=seed + i, capacity=params.capacity)
        for i in range(1, params.workers)
    ]
    specs.append(
        sim_worker(
            "flaky-1",
            latency=params.latency,
            seed=seed + 99,
            capacity=params.capacity,
            AGENTMESH_SIM_OUTAGE=f"{start},{end}",
        )
    )
    mesh = Mesh("s5", log_dir, specs)
    with Cluster([mesh]):
        # The outage clock starts with the flaky worker's process (a little later, in fact:
        # once its backend is made); the load runs until `after` seconds past its end.
        spawned = mesh.started_at["flaky-1"]
        duration = spawned + end + params.after - time.monotonic()
        if duration <= 0 or spawned + start < time.monotonic():
            raise RuntimeError("the mesh took longer to start than the outage's start allows")
        before = mesh.metrics()
        load_began = time.monotonic()
        arrivals = poisson_arrivals(
            params.capacity_per_s() * params.load, duration, random.Random(f"{seed}:s5")
        )
        samples = asyncio.run(_load(mesh, arrivals, params.deadline))
        after = mesh.metrics()

    sent = len(samples)
    attempts = ratio(after.get(ATTEMPTS, 0.0) - before.get(ATTEMPTS, 0.0), sent)
    within = ratio(sum(1 for s in samples if s.ok and s.latency <= params.deadline), sent)
    window = (spawned + start - load_began, spawned + end - load_began)
    in_window = [s for s in samples if window[0] <= s.sent < window[1]]
    codes: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            codes[s.code] = codes.get(s.code, 0) + 1
    ok_latencies = [s.latency for s in samples if s.ok]
    return ScenarioResult(
        key="S5",
        title="Retry storm: one worker UNAVAILABLE for a window at 60% load",
        metrics={
            "requests": sent,
            "attempts_per_subtask": attempts,
            "retries": after.get(RETRIES, 0.0) - before.get(RETRIES, 0.0),
            "retries_refused_by_budget": after.get(REFUSED, 0.0) - before.get(REFUSED, 0.0),
            "share_within_deadline": within,
            "failed_by_code": codes,
            "in_window_requests": len(in_window),
            "in_window_attempts_per_ok_request": ratio(
                sum(s.attempts for s in in_window if s.ok), sum(1 for s in in_window if s.ok)
            ),
            "in_window_share_within_deadline": ratio(
                sum(1 for s in in_window if s.ok and s.latency <= params.deadline),
                len(in_window),
            ),
            "p50_ms": ms(percentile(ok_latencies, 0.5)),
            "p99_ms": ms(percentile(ok_latencies, 0.99)),
            "outage_share_of_run": (end - start) / duration,
        },
        targets={
            "attempts_per_subtask": Target(attempts, 1.1, "<=", "×"),
            "share_within_deadline": Target(within, 0.99, ">="),
        },
        notes=[
            f"4 workers (median {params.latency * 1000:.0f} ms, capacity {params.capacity}); "
            f"the outage lasts {end - start:g} s of a {duration:.1f} s load; deadline "
            f"{params.deadline:g} s; default retry policy and budget.",
            "In-window figures use the nominal window (from the worker's spawn), which the "
            "real one trails by the worker's start-up time.",
        ],
    )


async def _load(mesh: Mesh, arrivals: list[float], deadline: float) -> list[Sample]:
    caller = SchedulerCaller(mesh.target)

    async def call() -> int:
        response = await caller.dispatch(CAPABILITY, DATA, deadline)
        return response.attempts

    try:
        return await open_loop(call, arrivals)
    finally:
        await caller.close()
