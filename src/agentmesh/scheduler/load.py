"""Load measurement, kept apart from choosing (see `policies`).

`PeakEwma` follows Finagle's and tower's peak-EWMA: the estimate jumps up to
any observation above it at once and decays towards lower ones over a time
constant, so a worker that slows down is noticed on its first slow answer
and forgiven gradually. As in Finagle and Linkerd, the decay also runs with
the time elapsed at read time (`decay_toward`): an estimate that gets no new
samples (a worker no longer picked because it was slow once) drifts back
towards the pool's typical latency instead of staying frozen. `Pending`
keeps the start times of a worker's outstanding attempts, so that a worker
that stops answering looks at least as slow as its oldest attempt is old
(Finagle's pending-request penalty). `ErrorRate` is a time-decayed failure
ratio.
"""

from __future__ import annotations

import itertools
import math
from collections import deque


def decay_toward(value: float, target: float, elapsed: float, decay: float) -> float:
    """`value` moved towards a lower `target` for `elapsed` seconds of a `decay` time constant.

    Never raised: a value at or below the target stays where it is.
    """
    if value <= target or elapsed <= 0:
        return value
    return target + (value - target) * math.exp(-elapsed / decay)


class PeakEwma:
    """A peak-sensitive, time-decayed latency estimate in seconds."""

    def __init__(self, initial: float, decay: float, now: float) -> None:
        #: Time constant of the decay in seconds.
        self.decay = decay
        self._estimate = initial
        self._stamp = now

    @property
    def observed_at(self) -> float:
        """When the last latency was observed (or the estimate was made)."""
        return self._stamp

    def observe(self, latency: float, now: float, toward: float | None = None) -> None:
        """Fold one observed latency into the estimate.

        With `toward`, the estimate first decays towards it for the time
        since the last observation (what a reader saw just before), so that
        the first sample after a long quiet spell is weighed against the
        decayed estimate, not the stale one.
        """
        current = self._estimate
        if toward is not None:
            current = decay_toward(current, toward, now - self._stamp, self.decay)
        if latency > current:
            self._estimate = latency
        else:
            weight = math.exp(-max(now - self._stamp, 0.0) / self.decay)
            self._estimate = current * weight + latency * (1.0 - weight)
        self._stamp = now

    def estimate(self) -> float:
        """The estimate as of the last observation (no read-time decay)."""
        return self._estimate


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


class ErrorRate:
    """Share of recent attempts that failed, decayed over a time constant."""

    def __init__(self, decay: float, now: float) -> None:
        self.decay = decay
        self._rate = 0.0
        self._stamp = now

    def observe(self, failed: bool, now: float) -> None:
        # Each observation moves the rate towards 0 or 1 by a step that
        # grows with the time since the last one, capped so a burst of
        # observations within microseconds still counts.
        weight = math.exp(-max(now - self._stamp, 0.0) / self.decay)
        weight = min(weight, 0.9)
        self._rate = self._rate * weight + (1.0 if failed else 0.0) * (1.0 - weight)
        self._stamp = now

    def rate(self, now: float) -> float:
        """The rate, decayed towards zero for the quiet time since the last attempt."""
        return self._rate * math.exp(-max(now - self._stamp, 0.0) / self.decay)


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
