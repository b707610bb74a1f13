"""Load measurement, kept apart from choosing (see `policies`).

The estimators a worker shares with the scheduler (`PeakEwma`, `ErrorRate`,
`decay_toward`) are in `agentmesh.server.estimators`. Here: `Pending` keeps the
start times of a worker's outstanding attempts, so that a worker that stops
answering looks at least as slow as its oldest attempt is old (Finagle's
pending-request penalty); `LatencyWindow` a running percentile;
`TokenBucket` the retry and hedge budgets.
"""

from __future__ import annotations

import itertools
import math
from collections import deque


class Pending:
    """Start times of the attempts outstanding on a worker (tower's `PendingRequests`, aged)."""

    def __init__(self) -> None:
        # Insertion order is start order (the clock is monotonic), so the
        # first entry left is the oldest attempt.
        self._started: dict[int, float] = {}
        self._tokens = itertools.count()

    def __len__(self) -> int:
        return len(self._started)

    def start(self, now: float) -> int:
        """Count an attempt as started now; returns the token to `finish` it with."""
        token = next(self._tokens)
        self._started[token] = now
        return token

    def finish(self, token: int) -> None:
        self._started.pop(token, None)

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest outstanding attempt has run (0 with none)."""
        for started in self._started.values():
            return max(now - started, 0.0)
        return 0.0


class LatencyWindow:
    """The last `size` latencies of successful attempts, for a running percentile."""

    def __init__(self, size: int = 256) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._values)

    def observe(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the window (0 when empty)."""
        ordered = sorted(self._values)
        if not ordered:
            return 0.0
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


class TokenBucket:
    """A budget of extra attempts earned by ordinary ones (Finagle's retry budget).

    Every ordinary attempt deposits `ratio` of a token, up to `reserve`
    tokens; every extra attempt (a retry, a hedge) spends one. Under steady
    traffic extra attempts stay below `ratio` of the traffic, and a sick
    worker cannot multiply the load; `reserve` lets a quiet mesh retry a few
    failures still.
    """

    def __init__(self, ratio: float, reserve: float) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self.balance = reserve

    def deposit(self) -> None:
        self.balance = min(self.balance + self.ratio, self.reserve)

    def withdraw(self) -> bool:
        """Spend a token; False (and nothing spent) when there is none."""
        if self.balance < 1.0:
            return False
        self.balance -= 1.0
        return True

    def refund(self) -> None:
        self.balance = min(self.balance + 1.0, self.reserve)
