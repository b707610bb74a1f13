"""S10 autoscaling: a day of the reference load through KEDA's rule, against a fixed fleet.

A discrete-event simulation, no processes: a worker pool over one simulated
day (86,400 s of model time, a fraction of a second each to run), fed by
10,000 requests whose arrivals follow a working day with a morning peak
(`DayModel.hourly`), each bringing the support workflow's seven subtasks to
the pool. Three fleets serve the same arrivals and the same latencies:

- **fixed**: the smallest constant number of pods whose p95 queue wait in
  the peak hour is within `DayModel.peak_wait_goal` (sized for the peak);
- **autoscaled**: KEDA with the ScaledObject of deploy/kubernetes (min 1):
  every `polling` seconds it asks for `ceil(metric / target)` replicas,
  the metric computed by the scheduler's own rule (`backlog.Backlog`, the
  code the scaler serves) from the pool's queue, oldest wait, in-flight
  subtasks and latency estimate; the HPA's default scale-up bounds and the
  manifests' scale-down behaviour apply; a new pod serves after a start
  time drawn from `DayModel.pod_start`, a removed one drains first;
- **autoscaled from zero**: the same with `minReplicaCount: 0`, woken at
  once by the first subtask (StreamIsActive) and taken to zero after the
  cooldown.

Reported per fleet: queue wait p50/p95/p99 over the day and p95 in the peak
hour, worker-hours (a pod counts from its creation, start time included,
to its removal, drain included), and the most pods at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from agentmesh.scheduler.backlog import Backlog, Pool
from agentmesh.tiers import Tier
from bench.stats import ScenarioResult, Target, percentile, ratio

DAY = 86_400.0


@dataclass(frozen=True)
class DayModel:
    """The seeded model of the day, the pool and the cluster (model seconds)."""

    requests: int = 10_000
    """Requests in the day."""
    hourly: tuple[int, ...] = (1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 13, 10,
                               8, 8, 8, 7, 6, 5, 4, 3, 3, 2, 2, 1)  # fmt: skip
    """Relative traffic of each hour from midnight: a working day, its peak 09:00-10:00
    (11% of the day), the night at 0.8% an hour."""
    subtasks: int = 7
    """Subtasks a request brings to the pool: the support workflow's seven steps."""
    step_median: float = 4.0
    """A subtask's latency, log-normal: median seconds. A self-hosted model on a CPU pod,
    at the pace LM measures (about 30 slot-seconds a ticket of seven steps)."""
    step_sigma: float = 0.5
    capacity: int = 1
    """Slots of one pod: one model slot per pod."""
    pod_start: tuple[float, float] = (30.0, 0.5)
    """Seconds from a pod's creation until its worker serves: log-normal median and shape
    (scheduling, container start, model load, registration)."""
    target: float = 10.0
    """targetSeconds, as in deploy/kubernetes."""
    polling: float = 10.0
    """KEDA's pollingInterval."""
    min_replicas: int = 1
    max_replicas: int = 40
    cooldown: float = 300.0
    """KEDA's cooldownPeriod: an inactive pool goes to zero this long after its last work."""
    scale_down_window: float = 120.0
    """The HPA's scale-down stabilization window, as in deploy/kubernetes."""
    scale_down_pods: tuple[int, float] = (2, 60.0)
    """At most this many pods removed per this many seconds, as in deploy/kubernetes."""
    peak_wait_goal: float = 1.0
    """The fixed fleet is the smallest whose peak-hour p95 queue wait is within this."""

    def arrivals(self, rng: random.Random) -> list[float]:
        """Request arrival times over the day: Poisson within each hour, by its weight."""
        total = sum(self.hourly)
        times: list[float] = []
        for hour, weight in enumerate(self.hourly):
            rate = self.requests * weight / total / 3600.0
            if rate <= 0:
                continue
            t = hour * 3600.0
            while True:
                t += rng.expovariate(rate)
                if t >= (hour + 1) * 3600.0:
                    break
                times.append(t)
        return times

    @property
    def peak_hour(self) -> int:
        return max(range(24), key=lambda h: self.hourly[h])


@dataclass(frozen=True)
class Job:
    arrival: float
    latency: float


@dataclass(eq=False)
class _Pod:
    created: float
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    gone: float | None = None


@dataclass
class DayResult:
    """What one fleet did over the day."""

    waits: list[float] = field(default_factory=list)
    peak_waits: list[float] = field(default_factory=list)
    worker_seconds: float = 0.0
    max_pods: int = 0

    def summary(self) -> dict[str, float | None]:
        return {
            "wait_p50_s": percentile(self.waits, 0.50),
            "wait_p95_s": percentile(self.waits, 0.95),
            "wait_p99_s": percentile(self.waits, 0.99),
            "peak_hour_wait_p95_s": percentile(self.peak_waits, 0.95),
            "worker_hours": self.worker_seconds / 3600.0,
            "max_pods": float(self.max_pods),
        }


class Fleet:
    """One pool over the day: pods, a FIFO queue, and (when autoscaled) KEDA's loop."""

    def __init__(
        self, model: DayModel, rng: random.Random, fixed: int | None, min_replicas: int
    ) -> None:
        self.model = model
        self.rng = rng
        self.fixed = fixed
        self.min_replicas = min_replicas
        self.pool = Pool(frozenset(), Tier.SMALL, target=model.target)
        self.pods: list[_Pod] = []
        self.queue: deque[Job] = deque()
        self.latency = model.step_median  # the scheduler's EWMA of attempt latencies
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = itertools.count()
        self.recommendations: deque[tuple[float, int]] = deque()
        self.removals: deque[float] = deque()
        self.last_active = 0.0
        self.result = DayResult()

    def run(self, jobs: list[Job]) -> DayResult:
        for _ in range(self.fixed if self.fixed is not None else self.min_replicas):
            self.pods.append(_Pod(created=0.0, ready=True))
        for job in jobs:
            self._at(job.arrival, "arrive", job)
        if self.fixed is None:
            self._at(self.model.polling, "poll", None)
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            if kind == "arrive":
                assert isinstance(payload, Job)
                self.queue.append(payload)
                if self.fixed is None and not self._live():
                    self._scale_to(1, now)  # StreamIsActive: KEDA wakes the pool at once
            elif kind == "ready":
                assert isinstance(payload, _Pod)
                if payload.gone is None:
                    payload.ready = True
            elif kind == "done":
                assert isinstance(payload, tuple)
                pod, latency = payload
                pod.in_flight -= 1
                self.latency += 0.1 * (latency - self.latency)
                if pod.draining and pod.in_flight == 0:
                    pod.gone = now
            elif kind == "poll":
                self._poll(now)
                if now < DAY or self.queue or any(p.in_flight for p in self.pods):
                    self._at(now + self.model.polling, "poll", None)
            self._dispatch(now)
            self.result.max_pods = max(self.result.max_pods, len(self._live()))
        for pod in self.pods:
            end = DAY if pod.gone is None else min(pod.gone, DAY)
            self.result.worker_seconds += max(end - pod.created, 0.0)
        return self.result

    def _at(self, when: float, kind: str, payload: object) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, payload))

    def _live(self) -> list[_Pod]:
        """Pods that count as replicas: starting or serving, not draining."""
        return [p for p in self.pods if p.gone is None and not p.draining]

    def _dispatch(self, now: float) -> None:
        while self.queue:
            free = [
                p
                for p in self.pods
                if p.ready
                and not p.draining
                and p.gone is None
                and p.in_flight < self.model.capacity
            ]
            if not free:
                return
            pod = min(free, key=lambda p: p.in_flight)
            job = self.queue.popleft()
            wait = now - job.arrival
            self.result.waits.append(wait)
            if self.model.peak_hour * 3600 <= job.arrival < (self.model.peak_hour + 1) * 3600:
                self.result.peak_waits.append(wait)
            pod.in_flight += 1
            self._at(now + job.latency, "done", (pod, job.latency))

    def backlog(self, now: float) -> Backlog:
        """The pool's backlog by the scheduler's rule, from the fleet's state now."""
        serving = [p for p in self.pods if p.gone is None and p.ready and not p.draining]
        return Backlog(
            pool=self.pool,
            queued=len(self.queue),
            queued_work=len(self.queue) * self.latency,
            oldest_wait=now - self.queue[0].arrival if self.queue else 0.0,
            in_flight=sum(p.in_flight for p in self.pods if p.gone is None),
            workers=len(serving),
            worker_capacity=self.model.capacity,
        )

    def _poll(self, now: float) -> None:
        backlog = self.backlog(now)
        current = len(self._live())
        if backlog.active:
            self.last_active = now
        # The HPA keeps at least one replica; below that, KEDA decides alone: an inactive
        # pool with minReplicaCount 0 goes to zero once its cooldown has passed.
        wanted = min(max(backlog.replicas, self.min_replicas, 1), self.model.max_replicas)
        if self.min_replicas == 0 and not backlog.active:
            if current == 0 or now - self.last_active >= self.model.cooldown:
                wanted = 0
        # The HPA's scale-down stabilization: the highest recommendation of the window.
        self.recommendations.append((now, wanted))
        while self.recommendations[0][0] < now - self.model.scale_down_window:
            self.recommendations.popleft()
        if wanted < current:
            wanted = max(wanted, max(r for _, r in self.recommendations))
        if wanted > current:
            # The HPA's default scale-up bound: 4 pods or 100% per period.
            wanted = min(wanted, max(current + 4, 2 * current))
        self._scale_to(wanted, now)

    def _scale_to(self, wanted: int, now: float) -> None:
        live = self._live()
        if wanted > len(live):
            median, sigma = self.model.pod_start
            for _ in range(wanted - len(live)):
                pod = _Pod(created=now)
                self.pods.append(pod)
                self._at(now + median * math.exp(self.rng.gauss(0, sigma)), "ready", pod)
        elif wanted < len(live):
            count, period = self.model.scale_down_pods
            while self.removals and self.removals[0] < now - period:
                self.removals.popleft()
            allowed = max(count - len(self.removals), 0)
            if wanted == 0:
                allowed = len(live)  # KEDA's own scale to zero is not the HPA's
            # Starting pods first, then the least busy.
            victims = sorted(live, key=lambda p: (p.ready, p.in_flight))
            for pod in victims[: min(len(live) - wanted, allowed)]:
                pod.draining = True
                self.removals.append(now)
                if pod.in_flight == 0:
                    pod.gone = now


def jobs_of(model: DayModel, seed: int) -> list[Job]:
    """The day's subtasks: each request's, arriving with it, with their latencies."""
    rng = random.Random(f"{seed}:s10:arrivals")
    draws = random.Random(f"{seed}:s10:latency")
    jobs = []
    for arrival in model.arrivals(rng):
        for _ in range(model.subtasks):
            latency = model.step_median * math.exp(draws.gauss(0, model.step_sigma))
            jobs.append(Job(arrival, latency))
    return jobs


def simulate(
    model: DayModel,
    jobs: list[Job],
    seed: int,
    fixed: int | None = None,
    min_replicas: int | None = None,
) -> DayResult:
    """One fleet over the day: `fixed` pods, or autoscaled with `min_replicas`."""
    floor = model.min_replicas if min_replicas is None else min_replicas
    return Fleet(model, random.Random(f"{seed}:s10:pods"), fixed, floor).run(jobs)


def size_for_peak(model: DayModel, jobs: list[Job], seed: int) -> tuple[int, DayResult]:
    """The smallest fixed fleet whose peak-hour p95 queue wait is within the goal."""
    total = sum(model.hourly)
    peak = model.requests * max(model.hourly) / total / 3600.0  # requests/s in the peak hour
    mean = model.step_median * math.exp(model.step_sigma**2 / 2)
    low = max(math.ceil(peak * model.subtasks * mean / model.capacity), 1)  # offered load

    def fits(n: int) -> DayResult | None:
        result = simulate(model, jobs, seed, fixed=n)
        p95 = percentile(result.peak_waits, 0.95)
        return result if p95 is not None and p95 <= model.peak_wait_goal else None

    high = low
    while (found := fits(high)) is None:
        low, high = high + 1, high * 2
    # The wait falls as the fleet grows: the smallest that fits, by bisection.
    while low < high:
        middle = (low + high) // 2
        if (result := fits(middle)) is not None:
            high, found = middle, result
        else:
            low = middle + 1
    return high, found


FULL = DayModel()
SMOKE = DayModel(requests=1_000)


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    del log_dir  # a simulation: no processes, no logs
    model = SMOKE if smoke else FULL
    jobs = jobs_of(model, seed)
    fleet, fixed = size_for_peak(model, jobs, seed)
    variants = {
        "fixed": fixed,
        "autoscaled": simulate(model, jobs, seed),
        "from_zero": simulate(model, jobs, seed, min_replicas=0),
    }
    metrics: dict[str, object] = {
        "requests": len(jobs) // model.subtasks,
        "subtasks": len(jobs),
        "fixed_pods": fleet,
    }
    for name, result in variants.items():
        for key, value in result.summary().items():
            metrics[f"{name}_{key}"] = value
    scaled = variants["autoscaled"]
    hours = ratio(scaled.worker_seconds, fixed.worker_seconds)
    metrics["worker_hours_ratio_from_zero"] = ratio(
        variants["from_zero"].worker_seconds, fixed.worker_seconds
    )
    return ScenarioResult(
        key="S10",
        title="autoscaling on the backlog: a day against a fixed fleet",
        metrics=metrics,
        targets={
            "worker_hours_ratio": Target(
                hours,
                1.0,
                "<=",
                "×",
                note="the autoscaled pool's worker-hours over the fixed fleet's",
            ),
            "p95_queue_wait": Target(
                percentile(scaled.waits, 0.95),
                model.target,
                "<=",
                "s",
                note="the autoscaled pool's p95 wait for a slot, over the day",
            ),
        },
        notes=[
            f"{len(jobs)} subtasks of {len(jobs) // model.subtasks} requests; "
            f"fixed fleet sized for the peak: {fleet} pods; pod start "
            f"{model.pod_start[0]:.0f} s median; target {model.target:.0f} s.",
        ],
    )
