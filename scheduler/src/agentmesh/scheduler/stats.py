"""A sliding window of finished requests: outcomes, rate, latency percentiles."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    request_id: str
    workflow: str
    state: str
    duration: float
    #: Monotonic time of the outcome, for the window.
    at: float
    #: Wall-clock time of the outcome, for people.
    wall_time: float
    error_code: str = ""
    #: The tenant of its caller ("" for none): two tenants may each have one of the same id.
    tenant: str = ""


@dataclass(frozen=True)
class WindowSummary:
    counts: dict[str, int]
    rate: float
    p50: float
    p95: float
    p99: float


class RequestWindow:
    """The last `window` seconds of finished requests (at most `capacity` of them)."""

    def __init__(self, window: float = 60.0, capacity: int = 20_000) -> None:
        self.window = window
        self._finished: deque[Finished] = deque(maxlen=capacity)

    def record(self, finished: Finished) -> None:
        self._finished.append(finished)

    def _trim(self, now: float) -> None:
        while self._finished and self._finished[0].at < now - self.window:
            self._finished.popleft()

    def summary(self, now: float) -> WindowSummary:
        self._trim(now)
        counts: dict[str, int] = {}
        for f in self._finished:
            counts[f.state] = counts.get(f.state, 0) + 1
        durations = sorted(f.duration for f in self._finished)
        return WindowSummary(
            counts=counts,
            rate=len(durations) / self.window,
            p50=percentile(durations, 0.50),
            p95=percentile(durations, 0.95),
            p99=percentile(durations, 0.99),
        )

    def recent(self, count: int) -> list[Finished]:
        """The newest `count` finished requests, newest first."""
        return [self._finished[-i] for i in range(1, min(count, len(self._finished)) + 1)]


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]
