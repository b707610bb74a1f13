"""Balancing policies: each picks one worker from the candidates.

A policy is one small class with one method, `pick`. Candidates are never
empty and are all able to take the subtask now; how load is measured lives
in `load`. The random source is injected so that tests are reproducible.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from agentmesh.scheduler.registry import WorkerRecord


class Policy(Protocol):
    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord: ...

    def worth_waiting(
        self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], waiting: int, now: float
    ) -> bool:
        """Whether to keep the queue head waiting for a busy worker rather than send it to
        `chosen`; `waiting` subtasks are queued, the head included."""
        ...


class _NeverWait:
    """Baselines send work to whichever free worker they pick."""

    def worth_waiting(
        self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], waiting: int, now: float
    ) -> bool:
        return False


class RoundRobin(_NeverWait):
    """Each candidate in turn, whatever its load: the naive baseline."""

    def __init__(self, rng: random.Random) -> None:
        self._counter = itertools.count(rng.randrange(1 << 16))

    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord:
        return candidates[next(self._counter) % len(candidates)]


class PowerOfTwoChoices(_NeverWait):
    """The less loaded of two random candidates, load being in-flight over capacity."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        return a if _utilisation(a) <= _utilisation(b) else b


class LatencyWeighted:
    """The candidate expected to finish the subtask soonest: the default.

    cost = latency × (1 + load weight × in-flight / capacity) × (1 + penalty × error rate)

    A worker's slots run in parallel, so a free slot finishes in about the
    worker's latency whatever its other slots do; the small load term only
    spreads work among workers of equal speed (a full worker counts as at
    most 1.5× slower), and never makes a worker twice as slow look better.
    The latency is the worker's `latency_estimate`: the scheduler's own
    peak-EWMA of observed calls, raised to the worker's self-reported
    estimate when that is higher (a worker slows down before the scheduler
    has seen it), decayed towards its peers' typical latency while it gets
    no samples, and at least the age of its oldest outstanding attempt.
    Ties go to a random candidate so that equal workers share the load.
    """

    #: How much a 100% error rate multiplies the cost.
    error_penalty = 10.0
    #: How much a full worker's cost exceeds an idle one's.
    load_weight = 0.5

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def latency(self, worker: WorkerRecord, now: float) -> float:
        """Expected seconds for one subtask, errors counted as lost time."""
        latency = worker.latency_estimate(now)
        return latency * (1.0 + self.error_penalty * worker.errors.rate(now))

    def worth_waiting(
        self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], waiting: int, now: float
    ) -> bool:
        """Wait for busy workers when they would finish the queue sooner than `chosen`.

        Full workers free slots at Σ capacity / latency per second, so the
        last of `waiting` queued subtasks starts after waiting / that rate
        and finishes one latency later. A free but slow worker takes one
        subtask off the queue only when that is later than it would finish it.
        """
        if not busy:
            return False
        latencies = [self.latency(w, now) for w in busy]
        rate = sum(w.spec.capacity / max(s, 1e-6) for w, s in zip(busy, latencies, strict=True))
        finish_elsewhere = waiting / rate + min(latencies)
        return finish_elsewhere < self.latency(chosen, now)

    def cost(self, worker: WorkerRecord, now: float) -> float:
        load = worker.in_flight / worker.spec.capacity
        return self.latency(worker, now) * (1.0 + self.load_weight * load)

    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord:
        costs = [self.cost(w, now) for w in candidates]
        best_cost = min(costs)
        best = [w for w, c in zip(candidates, costs, strict=True) if c <= best_cost * (1 + 1e-9)]
        return best[0] if len(best) == 1 else self._rng.choice(best)


class Probing:
    """Another policy, plus an occasional pick of a worker it has not heard from.

    A latency-based policy stops sending work to a worker that looked slow,
    and so never learns that it is fast again. A free candidate with no
    answer for `idle_after` seconds is picked instead, with probability
    `share` per pick, at most once per `every` seconds per worker; the
    probe's answer updates its estimate either way.
    """

    #: Seconds without an answer after which a worker is worth a probe.
    idle_after = 5.0
    #: Seconds between two probes of the same worker.
    every = 5.0
    #: Chance that a pick with an idle candidate probes it.
    share = 0.05

    def __init__(self, inner: Policy, rng: random.Random) -> None:
        self.inner = inner
        self._rng = rng
        self._probed: dict[str, float] = {}

    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord:
        idle = [w for w in candidates if self._idle(w, now)]
        if idle and self._rng.random() < self.share:
            worker = self._rng.choice(idle)
            # Forget probes long past, so the map stays as small as the mesh.
            self._probed = {k: t for k, t in self._probed.items() if now - t < self.every}
            self._probed[worker.worker_id] = now
            return worker
        return self.inner.pick(candidates, now)

    def worth_waiting(
        self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], waiting: int, now: float
    ) -> bool:
        """Never hold a probe back; otherwise as the inner policy says."""
        if self._probed.get(chosen.worker_id) == now:
            return False
        return self.inner.worth_waiting(chosen, busy, waiting, now)

    def _idle(self, worker: WorkerRecord, now: float) -> bool:
        return (
            worker.in_flight == 0
            and now - worker.latency.observed_at >= self.idle_after
            and now - self._probed.get(worker.worker_id, float("-inf")) >= self.every
        )


def _utilisation(worker: WorkerRecord) -> float:
    return worker.in_flight / worker.spec.capacity


def _latency_weighted(rng: random.Random) -> Policy:
    return Probing(LatencyWeighted(rng), rng)


POLICIES: dict[str, Callable[[random.Random], Policy]] = {
    "latency_weighted": _latency_weighted,
    "round_robin": RoundRobin,
    "p2c": PowerOfTwoChoices,
}


def make_policy(name: str, rng: random.Random) -> Policy:
    """The policy registered under name; ValueError naming the choices otherwise."""
    try:
        return POLICIES[name](rng)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
