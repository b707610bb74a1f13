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

    def worth_waiting(self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], now: float) -> bool:
        """Whether to keep the subtask queued for a busy worker rather than send it to `chosen`."""
        ...


class _NeverWait:
    """Baselines send work to whichever free worker they pick."""

    def worth_waiting(self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], now: float) -> bool:
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
    """The candidate with the lowest expected wait: the default.

    cost = peak-EWMA latency × (in-flight + 1) / capacity × (1 + penalty × error rate)

    The latency estimate is the scheduler's own peak-EWMA of observed calls,
    raised to the worker's self-reported estimate when that is higher (a
    worker slows down before the scheduler has seen it). Ties go to a random
    candidate so that equal workers share the load.
    """

    #: How much a 100% error rate multiplies the cost.
    error_penalty = 10.0

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def latency(self, worker: WorkerRecord) -> float:
        return max(worker.latency.estimate(), worker.health.latency)

    def worth_waiting(self, chosen: WorkerRecord, busy: Sequence[WorkerRecord], now: float) -> bool:
        """Wait for a busy worker when it would finish the subtask sooner than `chosen`.

        A full worker frees a slot, on average, every latency / capacity
        seconds; queued there, the subtask would finish after that wait plus
        its latency. A free but slow worker is used only when it beats that.
        """
        finish_on_chosen = self.latency(chosen) * (
            1.0 + self.error_penalty * chosen.errors.rate(now)
        )
        finish_elsewhere = min(
            (self.latency(w) * (1.0 + 1.0 / w.spec.capacity) for w in busy), default=float("inf")
        )
        return finish_elsewhere < finish_on_chosen

    def cost(self, worker: WorkerRecord, now: float) -> float:
        latency = self.latency(worker)
        load = (worker.in_flight + 1) / worker.spec.capacity
        return latency * load * (1.0 + self.error_penalty * worker.errors.rate(now))

    def pick(self, candidates: Sequence[WorkerRecord], now: float) -> WorkerRecord:
        costs = [self.cost(w, now) for w in candidates]
        best_cost = min(costs)
        best = [w for w, c in zip(candidates, costs, strict=True) if c <= best_cost * (1 + 1e-9)]
        return best[0] if len(best) == 1 else self._rng.choice(best)


def _utilisation(worker: WorkerRecord) -> float:
    return worker.in_flight / worker.spec.capacity


POLICIES: dict[str, Callable[[random.Random], Policy]] = {
    "latency_weighted": LatencyWeighted,
    "round_robin": RoundRobin,
    "p2c": PowerOfTwoChoices,
}


def make_policy(name: str, rng: random.Random) -> Policy:
    """The policy registered under name; ValueError naming the choices otherwise."""
    try:
        return POLICIES[name](rng)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
