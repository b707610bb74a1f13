"""What a Heartbeat stream may send: reports faster than the interval are coalesced, and a
flood is refused, so that a peer cannot spend the scheduler's loop on its reports.

A report carries the worker's whole health (no deltas), so one dropped in favour of the
next loses nothing. A worker beats once per interval, and sooner only to say something
now (it is draining; it asks whether the scheduler is alive after a cancelled call), never
sooner than `MIN_GAP` of the interval after its last beat (`agents.membership`).
"""

from __future__ import annotations

import enum
import math

#: A report sooner than this share of the interval after the last applied one is
#: answered but not applied (coalesced), unless it changes whether the worker drains.
MIN_GAP = 0.1


class Verdict(enum.Enum):
    APPLY = "apply"
    """Apply the report to the registry, and answer it."""
    COALESCE = "coalesce"
    """Answer it; the registry keeps the report applied just before."""
    REFUSE = "refuse"
    """Too many: end the stream with RESOURCE_EXHAUSTED."""


class BeatLimiter:
    """One stream's reports, on a token bucket of `burst` reports refilled at `burst` per
    interval, and a minimum gap between applied ones."""

    burst = 50
    """Reports allowed at once, and per heartbeat interval on average (a worker sends one,
    and at most 1 / MIN_GAP)."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self._tokens = float(self.burst)
        self._refilled = now
        self._applied = -math.inf
        self._draining: bool | None = None

    def admit(self, now: float, draining: bool) -> Verdict:
        """What to do with a report arriving at `now`."""
        rate = self.burst / self.interval if self.interval > 0 else math.inf
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return Verdict.REFUSE
        self._tokens -= 1
        if draining == self._draining and now - self._applied < MIN_GAP * self.interval:
            return Verdict.COALESCE
        self._applied, self._draining = now, draining
        return Verdict.APPLY
