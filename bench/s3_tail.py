"""S3 one slow worker, and S4 hedging: tail latency by balancing policy.

Four `sim` workers offer one capability; three answer in a median 50 ms,
one is 4× slower (log-normal, σ 0.25, seeded; capacity 4 each). Open-loop
Poisson arrivals of Dispatch calls offer 40% and 60% of the workers'
combined capacity (Σ capacity / mean latency). One mesh runs per policy,
all started together and loaded in turn, round by round, each round sending
every variant the same arrival times:

- `round_robin`, `p2c`, `latency_weighted` (the default): `AGENTMESH_POLICY`;
- `hedge_p95`, `hedge_early` (S4, at 60% only): the default policy with
  `AGENTMESH_HEDGE_AFTER=p95` or a deliberately too early fixed delay;
- `oracle`: a router in the benchmark that knows every worker's true mean
  latency and capacity, sends each call to the worker with the shortest
  expected completion time (`Oracle`), and calls its Execute directly on
  the default mesh's workers. It also skips the scheduler's hop, so it is a
  slightly stricter baseline than a scheduler policy could be.

S4's goodput: closed-loop saturation of the default mesh against the hedged
ones, in interleaved rounds; goodput is calls answered OK within their
deadline per second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentmesh.scheduler.config import SchedulerConfig
from bench.harness import (
    Cluster,
    Mesh,
    SchedulerCaller,
    WorkerCaller,
    WorkerSpec,
    pause,
    sim_worker,
)
from bench.load import Call, Sample, closed_loop, open_loop, poisson_arrivals, rounds
from bench.stats import ScenarioResult, Target, median, ms, percentile, ratio

CAPABILITY = "sentiment"
DATA = {"text": "My refund has not arrived yet."}
POLICIES = ("round_robin", "p2c", "latency_weighted")
HEDGED = ("hedge_p95", "hedge_early")
ORACLE = "oracle"
DEFAULT = "latency_weighted"
#: The scheduler's counter of hedged attempts.
HEDGES = "agentmesh_subtask_hedges_total"


@dataclass(frozen=True)
class Params:
    fast_latency: float = 0.05
    """Median latency of the fast workers, seconds."""
    slow_factor: float = 4.0
    """How much slower the slow worker is."""
    sigma: float = 0.25
    """Log-normal shape of every worker's latency."""
    capacity: int = 4
    """Slots per worker."""
    fast_workers: int = 3
    loads: tuple[float, ...] = (0.4, 0.6)
    """Offered load as shares of the combined capacity; hedging runs at the highest."""
    seconds: float = 6.0
    """Length of one trial (one variant, one load, one round)."""
    rounds: int = 3
    warmup: float = 2.0
    """Seconds of load on every variant before the first round (latency estimates)."""
    settle: float = 0.4
    """Pause between trials."""
    deadline: float = 5.0
    """Deadline of every call, seconds."""
    goodput_seconds: float = 3.0
    goodput_concurrency: int = 32
    early_hedge: float = 0.001
    """The too-early fixed hedge delay of `hedge_early`, seconds."""

    @property
    def slow_latency(self) -> float:
        return self.fast_latency * self.slow_factor

    def capacity_per_s(self) -> float:
        """Calls per second the workers can serve: Σ capacity / mean latency."""
        stretch = math.exp(self.sigma**2 / 2)  # mean / median of a log-normal
        fast = self.fast_workers * self.capacity / (self.fast_latency * stretch)
        return fast + self.capacity / (self.slow_latency * stretch)


FULL = Params()
SMOKE = Params(
    seconds=0.3, rounds=1, warmup=0.25, settle=0.05, goodput_seconds=0.3, goodput_concurrency=8
)


def hedging_available() -> bool:
    """Whether this scheduler build reads AGENTMESH_HEDGE_AFTER."""
    return "hedge" in {f.name for f in dataclasses.fields(SchedulerConfig)}


class Oracle:
    """Sends each call to the worker with the shortest expected completion time.

    It knows each worker's true mean latency m and capacity c, and counts its
    own calls in flight n: a worker with a free slot finishes in m; a full
    one first works off the n + 1 - c calls ahead, at c per m. Ties go to a
    random worker (seeded).
    """

    def __init__(
        self,
        workers: Sequence[WorkerCaller],
        means: Sequence[float],
        capacities: Sequence[int],
        rng: random.Random,
    ) -> None:
        self.workers = list(workers)
        self.means = list(means)
        self.capacities = list(capacities)
        self.in_flight = [0] * len(self.workers)
        self._rng = rng

    def expected(self, i: int) -> float:
        ahead = max(0, self.in_flight[i] + 1 - self.capacities[i])
        return self.means[i] * (1.0 + ahead / self.capacities[i])

    def pick(self) -> int:
        costs = [self.expected(i) for i in range(len(self.workers))]
        best = min(costs)
        return self._rng.choice([i for i, c in enumerate(costs) if c <= best * (1 + 1e-9)])

    async def call(self, capability: str, data: Mapping[str, object], timeout: float) -> int:
        i = self.pick()
        self.in_flight[i] += 1
        try:
            await self.workers[i].execute(capability, data, timeout)
        finally:
            self.in_flight[i] -= 1
        return 1


def run(log_dir: Path, seed: int, smoke: bool) -> list[ScenarioResult]:
    params = SMOKE if smoke else FULL
    hedging = hedging_available()

    def workers() -> list[WorkerSpec]:
        specs = [
            sim_worker(
                f"fast-{i}",
                latency=params.fast_latency,
                sigma=params.sigma,
                seed=seed + 10 * i,
                capacity=params.capacity,
            )
            for i in range(1, params.fast_workers + 1)
        ]
        specs.append(
            sim_worker(
                "slow-1",
                latency=params.slow_latency,
                sigma=params.sigma,
                seed=seed + 99,
                capacity=params.capacity,
            )
        )
        return specs

    meshes = {name: Mesh(f"s3-{name}", log_dir, workers(), policy=name) for name in POLICIES}
    hedge_env = {"hedge_p95": "p95", "hedge_early": repr(params.early_hedge)}
    for name in HEDGED:
        meshes[name] = Mesh(
            f"s4-{name}",
            log_dir,
            workers(),
            policy=DEFAULT,
            env={"AGENTMESH_HEDGE_AFTER": hedge_env[name]},
        )
    with Cluster(list(meshes.values())):
        addresses = meshes[DEFAULT].worker_addresses()
        measured = asyncio.run(_measure(meshes, addresses, params, seed))
        hedge_shares = {
            name: ratio(meshes[name].metrics().get(HEDGES, 0.0), measured.sent.get(name))
            for name in HEDGED
        }
    return [
        _s3_result(measured, params),
        _s4_result(measured, params, hedging, hedge_shares),
    ]


@dataclass
class _Measured:
    """Samples by (load, variant): per round, and pooled."""

    by_round: dict[tuple[float, str], list[list[Sample]]]
    goodput: dict[str, list[float]]
    """Goodput (calls/s OK within deadline) per round, by variant."""
    sent: dict[str, int]
    """Calls sent to each variant in all, warm-up included."""

    def stat(self, load: float, variant: str, q: float) -> float | None:
        """Median over rounds of the per-round q-quantile of OK latencies."""
        return median(
            percentile([s.latency for s in samples if s.ok], q)
            for samples in self.by_round.get((load, variant), [])
        )

    def by_round_stat(self, load: float, variant: str, q: float) -> list[float | None]:
        """Each round's q-quantile of OK latencies, in milliseconds."""
        return [
            ms(percentile([s.latency for s in samples if s.ok], q))
            for samples in self.by_round.get((load, variant), [])
        ]

    def pooled(self, load: float, variant: str) -> list[float]:
        return [s.latency for r in self.by_round.get((load, variant), []) for s in r if s.ok]

    def errors(self, load: float, variant: str) -> int:
        return sum(1 for r in self.by_round.get((load, variant), []) for s in r if not s.ok)


async def _measure(
    meshes: dict[str, Mesh], addresses: dict[str, str], params: Params, seed: int
) -> _Measured:
    callers = {name: SchedulerCaller(mesh.target) for name, mesh in meshes.items()}
    measured = _Measured({}, {}, {})
    names = sorted(addresses)
    direct = [WorkerCaller(addresses[n]) for n in names]
    oracle = Oracle(
        direct,
        [
            (params.slow_latency if n.startswith("slow") else params.fast_latency)
            * math.exp(params.sigma**2 / 2)
            for n in names
        ],
        [params.capacity] * len(names),
        random.Random(f"{seed}:oracle"),
    )

    def call_for(variant: str) -> Call:
        if variant == ORACLE:

            async def via_oracle() -> int:
                measured.sent[variant] = measured.sent.get(variant, 0) + 1
                return await oracle.call(CAPABILITY, DATA, params.deadline)

            return via_oracle
        caller = callers[variant]

        async def via_scheduler() -> int:
            measured.sent[variant] = measured.sent.get(variant, 0) + 1
            response = await caller.dispatch(CAPABILITY, DATA, params.deadline)
            return response.attempts

        return via_scheduler

    capacity = params.capacity_per_s()
    top = max(params.loads)
    try:
        warm = poisson_arrivals(capacity * top, params.warmup, random.Random(f"{seed}:warmup"))
        for variant in [*meshes, ORACLE]:
            await open_loop(call_for(variant), warm)
        for load in params.loads:
            variants = [*POLICIES, ORACLE] + (list(HEDGED) if load == top else [])
            for r, order in enumerate(rounds(variants, params.rounds)):
                # Every variant of a round gets the same arrival times.
                arrivals = poisson_arrivals(
                    capacity * load, params.seconds, random.Random(f"{seed}:{load}:{r}")
                )
                for variant in order:
                    samples = await open_loop(call_for(variant), arrivals)
                    measured.by_round.setdefault((load, variant), []).append(samples)
                    await pause(params.settle)
        goodput_variants = [DEFAULT, *HEDGED]
        for order in rounds(goodput_variants, params.rounds):
            for variant in order:
                samples = await closed_loop(
                    call_for(variant), params.goodput_concurrency, params.goodput_seconds
                )
                good = sum(1 for s in samples if s.ok and s.latency <= params.deadline)
                measured.goodput.setdefault(variant, []).append(good / params.goodput_seconds)
                await pause(params.settle)
    finally:
        for caller in callers.values():
            await caller.close()
        for worker in direct:
            await worker.close()
    return measured


def _pct(load: float) -> str:
    return f"{round(load * 100)}pct"


def _s3_result(m: _Measured, params: Params) -> ScenarioResult:
    metrics: dict[str, object] = {
        "capacity_calls_per_s": params.capacity_per_s(),
        "fast_median_ms": params.fast_latency * 1000,
        "slow_median_ms": params.slow_latency * 1000,
    }
    targets: dict[str, Target] = {}
    panels: dict[str, dict[str, Sequence[float]]] = {}
    for load in params.loads:
        pct = _pct(load)
        variants = [*POLICIES, ORACLE]
        for v in variants:
            metrics[f"{pct}_{v}_ms"] = {
                "p50": ms(m.stat(load, v, 0.50)),
                "p95": ms(m.stat(load, v, 0.95)),
                "p99": ms(m.stat(load, v, 0.99)),
                "errors": m.errors(load, v),
                "p99_by_round": m.by_round_stat(load, v, 0.99),
            }
        oracle95, oracle99 = m.stat(load, ORACLE, 0.95), m.stat(load, ORACLE, 0.99)
        for v in POLICIES:
            metrics[f"{pct}_{v}_vs_oracle"] = {
                "p95": ratio(m.stat(load, v, 0.95), oracle95),
                "p99": ratio(m.stat(load, v, 0.99), oracle99),
            }
        targets[f"default_p95_vs_oracle_{pct}"] = Target(
            ratio(m.stat(load, DEFAULT, 0.95), oracle95), 1.2, "<=", "×"
        )
        targets[f"default_p99_vs_oracle_{pct}"] = Target(
            ratio(m.stat(load, DEFAULT, 0.99), oracle99), 1.6, "<=", "×"
        )
        panels[f"S3 one slow worker, {round(load * 100)}% load, rounds pooled"] = {
            v: m.pooled(load, v) for v in variants
        }
    top = max(params.loads)
    targets[f"round_robin_p95_vs_oracle_{_pct(top)}"] = Target(
        ratio(m.stat(top, "round_robin", 0.95), m.stat(top, ORACLE, 0.95)),
        2.0,
        ">=",
        "×",
        note="'far worse' read as at least twice the oracle's p95: shows the scenario bites",
    )
    return ScenarioResult(
        key="S3",
        title="One slow worker: tail latency by policy vs an oracle",
        metrics=metrics,
        targets=targets,
        notes=[
            f"4 workers (3 × {params.fast_latency * 1000:.0f} ms, 1 × "
            f"{params.slow_latency * 1000:.0f} ms median, σ {params.sigma}, capacity "
            f"{params.capacity}); open-loop Poisson Dispatch calls; {params.rounds} interleaved "
            f"rounds of {params.seconds:g} s per variant and load, same arrivals per round.",
            "Percentiles are medians over rounds of each round's percentile; ratios are "
            "ratios of those medians.",
            "The oracle routes in the benchmark process with the true mean latencies and "
            "calls the workers directly (no scheduler hop).",
        ],
        latencies=panels,
    )


def _s4_result(
    m: _Measured, params: Params, hedging: bool, shares: Mapping[str, float | None]
) -> ScenarioResult:
    top = max(params.loads)
    pct = _pct(top)
    oracle99 = m.stat(top, ORACLE, 0.99)
    metrics: dict[str, object] = {}
    for v in (DEFAULT, *HEDGED, ORACLE):
        metrics[f"{pct}_{v}_ms"] = {
            "p50": ms(m.stat(top, v, 0.50)),
            "p95": ms(m.stat(top, v, 0.95)),
            "p99": ms(m.stat(top, v, 0.99)),
            "errors": m.errors(top, v),
        }
    for v in HEDGED:
        metrics[f"{v}_hedges_per_subtask"] = shares.get(v)
    for v, rates in m.goodput.items():
        metrics[f"goodput_{v}_per_s"] = median(rates)
    note = "" if hedging else "this scheduler has no hedging option (AGENTMESH_HEDGE_AFTER)"
    p99_ratio = ratio(m.stat(top, "hedge_p95", 0.99), oracle99)
    goodput_ratio = ratio(
        median(m.goodput.get("hedge_early", [])), median(m.goodput.get(DEFAULT, []))
    )
    targets = {
        f"hedged_p99_vs_oracle_{pct}": Target(
            p99_ratio if hedging else None, 1.2, "<=", "×", note=note
        ),
        "early_hedge_goodput_vs_none": Target(
            goodput_ratio if hedging else None, 0.9, ">=", "×", note=note
        ),
    }
    metrics[f"{pct}_no_hedging_p99_vs_oracle"] = ratio(m.stat(top, DEFAULT, 0.99), oracle99)
    return ScenarioResult(
        key="S4",
        title="Hedging: p99 vs the oracle, and goodput with a too-early hedge",
        metrics=metrics,
        targets=targets,
        notes=[
            f"Same workers and rounds as S3 at {round(top * 100)}% load; `hedge_p95` hedges "
            f"after the capability's running p95, `hedge_early` after {params.early_hedge} s; "
            "both within the default budget (AGENTMESH_HEDGE_BUDGET, 5%).",
            f"Goodput: {params.goodput_concurrency} closed-loop clients for "
            f"{params.goodput_seconds:g} s per variant and round; calls OK within their "
            "deadline per second, median over rounds.",
        ],
        latencies={
            f"S4 hedging, {round(top * 100)}% load, rounds pooled": {
                v: m.pooled(top, v) for v in (DEFAULT, *HEDGED, ORACLE)
            }
        },
    )
