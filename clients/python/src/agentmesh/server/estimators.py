"""Latency and error estimators, shared by the scheduler and the workers.

`PeakEwma` follows Finagle's and tower's peak-EWMA: the estimate jumps up to
any observation above it at once and decays towards lower ones over a time
constant, so a worker that slows down is noticed on its first slow answer
and forgiven gradually. As in Finagle and Linkerd, the decay also runs with
the time elapsed at read time (`decay_toward`). `ErrorRate` is a
time-decayed failure ratio.
"""

from __future__ import annotations

import math


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
