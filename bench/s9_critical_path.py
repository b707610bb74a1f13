"""S9 critical-path priority: mixed DAGs at 80% of the workers' capacity, one deadline.

Requests are client-supplied plans of six steps of one capability, half of
them a **chain** (each step after the one before) and half **wide** (six
independent steps), drawn at random; every request has the same deadline.
The client draws each step's latency (exponential, mean 30 ms, seeded) and
sends it as `sim_latency_ms`; the `sim` workers sleep exactly that long.
Two workers with 3 slots each are the bottleneck: open-loop Poisson
arrivals offer 80% of their nominal capacity (slots / mean step latency;
the hop to the worker is not counted, so the true utilisation is a little
higher). Subtasks wait in the scheduler's queue for a slot, so the queue's
order decides who waits.

Two meshes differ only in `AGENTMESH_QUEUE_ORDER` (both with offload off,
so that every step goes through the queue): `critical_path` (least
slack first: the deadline less the expected remaining critical path after
the step) and `deadline` (earliest deadline first; with one deadline for
all, that is first come first served by request). They are loaded in turn,
in interleaved rounds (the order rotated each round), each round sending
both the same arrival times and the same plans and latencies.

A request meets its deadline when it succeeds; one that does not is cut by
the scheduler at the deadline (DEADLINE_EXCEEDED) and counts at its latency
when the error came. The targets compare, per round, the share of requests
meeting the deadline (critical_path less deadline, at least 0) and the p99
latency of all requests (critical_path over deadline, below 1), medians over
rounds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentmesh.agents.simulated import LATENCY_FIELD
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2
from bench.harness import Cluster, Mesh, SchedulerCaller, pause, sim_worker
from bench.load import poisson_arrivals, rounds
from bench.stats import ScenarioResult, Target, median, ms, percentile, ratio

CAPABILITY = "summarize"
DATA = {"text": "Where is my order ORD-123456? It was due last week."}
VARIANTS = ("critical_path", "deadline")
CHAIN, WIDE = "chain", "wide"


@dataclass(frozen=True)
class Params:
    steps: int = 6
    """Steps of every request, chain or wide."""
    chain_share: float = 0.5
    """Share of the requests that are chains."""
    mean_latency: float = 0.030
    """Mean of each step's exponential latency, seconds."""
    workers: int = 2
    capacity: int = 3
    """Slots per sim worker."""
    load: float = 0.8
    """Offered steps per second, as a share of Σ slots / mean step latency."""
    deadline: float = 0.52
    """Every request's deadline, seconds: about 2.9× a chain's mean ideal (6 × 30 ms), a
    little above its p99 ideal (about 0.4 s): tight enough that the order decides who
    misses it."""
    warmup: float = 3.0
    """Seconds of load on each mesh before the first round (the latency estimates)."""
    seconds: float = 20.0
    """Length of a round's arrivals, per variant."""
    rounds: int = 5
    settle: float = 0.5
    """Pause between variants, seconds."""

    def requests_per_s(self) -> float:
        return self.load * self.workers * self.capacity / self.mean_latency / self.steps


FULL = Params()
SMOKE = Params(warmup=0.5, seconds=2.0, rounds=1, settle=0.2)


@dataclass(frozen=True)
class Job:
    """One request to send: its shape and its steps' latencies (ms)."""

    at: float
    shape: str
    latencies_ms: tuple[float, ...]

    @property
    def ideal(self) -> float:
        """The soonest it could answer, seconds: its critical path with no waiting."""
        total = sum(self.latencies_ms) if self.shape == CHAIN else max(self.latencies_ms)
        return total / 1000.0


@dataclass(frozen=True)
class Outcome:
    job: Job
    latency: float
    ok: bool


def plan(job: Job) -> plan_pb2.Plan:
    """A chain (s1 after s0, ...) or independent steps, each told how long it takes."""
    steps = []
    for i, latency_ms in enumerate(job.latencies_ms):
        delay = plan_pb2.Binding()
        delay.value.number_value = latency_ms
        inputs = {"text": plan_pb2.Binding(refs=["request.text"]), LATENCY_FIELD: delay}
        after = [f"s{i - 1}"] if job.shape == CHAIN and i else []
        steps.append(
            plan_pb2.PlanStep(id=f"s{i}", capability=CAPABILITY, inputs=inputs, depends_on=after)
        )
    return plan_pb2.Plan(steps=steps)


def jobs(params: Params, duration: float, rng: random.Random) -> list[Job]:
    """Poisson arrivals, each a chain or a wide request with its steps' latencies drawn."""
    return [
        Job(
            at,
            CHAIN if rng.random() < params.chain_share else WIDE,
            tuple(rng.expovariate(1.0 / params.mean_latency) * 1000.0 for _ in range(params.steps)),
        )
        for at in poisson_arrivals(params.requests_per_s(), duration, rng)
    ]


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    meshes = {
        variant: Mesh(
            f"s9-{variant}",
            log_dir,
            [
                sim_worker(
                    f"sim-{i}", latency=params.mean_latency, seed=seed + i, capacity=params.capacity
                )
                for i in range(1, params.workers + 1)
            ],
            # Offload off: a chain's steps would otherwise follow its head to the worker
            # without queueing, whenever the scheduler counted as loaded.
            env={"AGENTMESH_QUEUE_ORDER": variant, "AGENTMESH_OFFLOAD": "off"},
        )
        for variant in VARIANTS
    }
    with Cluster(list(meshes.values())):
        measured = asyncio.run(_measure(meshes, params, seed))
    return _result(measured, params)


#: The scheduler's histogram of attempt durations: its sum is the slots' busy time.
BUSY = "agentmesh_subtask_attempt_duration_seconds_sum"


@dataclass
class Measured:
    """Each variant's outcomes, by round, and the share of its slots' time busy."""

    outcomes: dict[str, list[list[Outcome]]]
    busy: dict[str, list[float]]


async def _measure(meshes: dict[str, Mesh], params: Params, seed: int) -> Measured:
    callers = {variant: SchedulerCaller(mesh.target) for variant, mesh in meshes.items()}
    measured = Measured({v: [] for v in meshes}, {v: [] for v in meshes})
    slots = params.workers * params.capacity
    try:
        warm = jobs(params, params.warmup, random.Random(f"{seed}:warmup"))
        for variant in meshes:
            await _open_loop(callers[variant], warm, params)
            await pause(params.settle)
        for r, order in enumerate(rounds(list(meshes), params.rounds)):
            # Both variants of a round get the same arrivals, shapes and latencies.
            load = jobs(params, params.seconds, random.Random(f"{seed}:{r}"))
            for variant in order:
                busy0, t0 = meshes[variant].metrics().get(BUSY, 0.0), time.perf_counter()
                measured.outcomes[variant].append(await _open_loop(callers[variant], load, params))
                wall = time.perf_counter() - t0
                busy = meshes[variant].metrics().get(BUSY, 0.0) - busy0
                measured.busy[variant].append(busy / (slots * wall))
                await pause(params.settle)
    finally:
        for caller in callers.values():
            await caller.close()
    return measured


async def _open_loop(caller: SchedulerCaller, load: Sequence[Job], params: Params) -> list[Outcome]:
    """Send each job at its time, whatever is still in flight."""
    origin = time.perf_counter()

    async def send(job: Job) -> Outcome:
        await asyncio.sleep(max(0.0, origin + job.at - time.perf_counter()))
        sent = time.perf_counter()
        try:
            request = await caller.submit(plan(job), DATA, timeout=params.deadline)
        except AgentmeshError:
            return Outcome(job, time.perf_counter() - sent, ok=False)
        ok = request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
        return Outcome(job, time.perf_counter() - sent, ok)

    return list(await asyncio.gather(*(send(job) for job in load)))


def _share_met(outcomes: Iterable[Outcome]) -> float | None:
    done = list(outcomes)
    return sum(o.ok for o in done) / len(done) if done else None


def _p(outcomes: Iterable[Outcome], q: float) -> float | None:
    return ms(percentile((o.latency for o in outcomes), q))


def _round(outcomes: Sequence[Outcome]) -> dict[str, float | None]:
    """One variant's round: deadline-met shares and latency percentiles (ms), by shape too."""
    stats: dict[str, float | None] = {
        "met_share": _share_met(outcomes),
        "p50_ms": _p(outcomes, 0.50),
        "p95_ms": _p(outcomes, 0.95),
        "p99_ms": _p(outcomes, 0.99),
        "requests": float(len(outcomes)),
    }
    for shape in (CHAIN, WIDE):
        mine = [o for o in outcomes if o.job.shape == shape]
        stats[f"{shape}_met_share"] = _share_met(mine)
        stats[f"{shape}_p50_ms"] = _p(mine, 0.50)
        stats[f"{shape}_p99_ms"] = _p(mine, 0.99)
        stats[f"{shape}_ideal_p99_ms"] = ms(percentile((o.job.ideal for o in mine), 0.99))
    return stats


def _result(measured: Measured, params: Params) -> ScenarioResult:
    by_round = {v: [_round(outcomes) for outcomes in measured.outcomes[v]] for v in VARIANTS}
    cp, edf = by_round["critical_path"], by_round["deadline"]

    def gain(key: str) -> list[float | None]:
        return [
            None if a[key] is None or b[key] is None else a[key] - b[key]  # type: ignore[operator]
            for a, b in zip(cp, edf, strict=True)
        ]

    met_gain = median(gain("met_share"))
    p99_ratio = median(ratio(a["p99_ms"], b["p99_ms"]) for a, b in zip(cp, edf, strict=True))
    metrics: dict[str, object] = {
        "met_share_gain": met_gain,
        "met_share_gain_by_round": gain("met_share"),
        "p99_ratio": p99_ratio,
    }
    for variant, stats in by_round.items():
        for key in stats[0] if stats else ():
            if key != "requests":
                metrics[f"{variant}_{key}"] = median(s[key] for s in stats)
        metrics[f"{variant}_p99_ms_by_round"] = [s["p99_ms"] for s in stats]
        metrics[f"{variant}_requests"] = sum(int(s["requests"] or 0) for s in stats)
        metrics[f"{variant}_slots_busy"] = median(measured.busy[variant])
    metrics["requests_per_s"] = params.requests_per_s()
    metrics["deadline_ms"] = params.deadline * 1000.0
    return ScenarioResult(
        key="S9",
        title=(
            f"Critical-path priority: chains and wide plans of {params.steps} steps "
            f"(exponential, mean {params.mean_latency * 1000:g} ms), one "
            f"{params.deadline * 1000:g} ms deadline, {params.load:.0%} of "
            f"{params.workers}×{params.capacity} sim slots"
        ),
        metrics=metrics,
        targets={
            "met_share_gain": Target(
                met_gain, 0.0, ">=", note="share meeting the deadline, critical_path − deadline"
            ),
            "p99_ratio": Target(
                p99_ratio, 1.0, "<=", "×", note="p99 latency, critical_path / deadline"
            ),
        },
        notes=[
            f"{params.chain_share:.0%} chains (each step after the one before), the rest six "
            "independent steps, all on one capability; the client draws each step's latency "
            "and the sim workers sleep exactly that long.",
            f"Open-loop Poisson arrivals at {params.requests_per_s():.1f} requests/s = "
            f"{params.load:.0%} of Σ slots / mean step latency; the same arrivals, shapes and "
            "latencies for both variants of a round.",
            "slots_busy: the scheduler's attempt time over the round per slot (the hop and the "
            "worker's runtime included), drain included.",
            "A request meets its deadline when it succeeds; the scheduler cuts the others at the "
            "deadline. Percentiles are over every request, a miss at the latency of its error.",
            f"{params.rounds} interleaved rounds of {params.seconds:g} s per variant after "
            f"{params.warmup:g} s of warm-up each; medians over rounds of the per-round values.",
        ],
        latencies={
            f"S9 mixed DAGs at {params.load:.0%}": {
                variant: [o.latency for r in measured.outcomes[variant] for o in r]
                for variant in VARIANTS
            }
        },
    )
