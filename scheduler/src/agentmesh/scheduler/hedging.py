"""Hedging: a second copy of a slow attempt on another worker; the first success wins.

`HedgePolicy` says when to hedge: after the capability's running p95, or
after a fixed delay. `Hedger` keeps what that needs (each capability's
window of latencies, a budget of extra attempts) and runs the race. Which
worker takes the copy is the dispatcher's choice, so that a hedge never
jumps its queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentmesh.scheduler.calls import DispatchObserver, ExecuteResult
from agentmesh.scheduler.load import LatencyWindow, TokenBucket
from agentmesh.scheduler.registry import WorkerRecord

#: Runs one attempt on a worker; the flag says whether it is the hedge.
RunOn = Callable[[WorkerRecord, bool], Awaitable[ExecuteResult]]


@dataclass(frozen=True)
class HedgeOff:
    """No hedging."""


@dataclass(frozen=True)
class HedgeAtPercentile:
    """Hedge an attempt still running after this percentile of the capability's latencies."""

    quantile: float = 0.95


@dataclass(frozen=True)
class HedgeAfterDelay:
    """Hedge an attempt still running after a fixed number of seconds."""

    seconds: float


HedgeAfter = HedgeOff | HedgeAtPercentile | HedgeAfterDelay
"""When to hedge: off, after a running percentile, or after a fixed delay."""


def parse_hedge_after(text: str) -> HedgeAfter:
    """AGENTMESH_HEDGE_AFTER: "" (off), "p95", or a number of seconds; ValueError otherwise."""
    if not text:
        return HedgeOff()
    if text == "p95":
        return HedgeAtPercentile(0.95)
    try:
        return HedgeAfterDelay(float(text))
    except ValueError:
        raise ValueError(f"hedge delay {text!r}: use p95 or a number of seconds") from None


@dataclass(frozen=True)
class HedgePolicy:
    """When to send a second copy of a slow attempt to another worker."""

    after: HedgeAfter = HedgeOff()
    """Off, after the capability's running p95 latency, or after a number of seconds
    (`parse_hedge_after`). Env AGENTMESH_HEDGE_AFTER ("", "p95" or seconds). Default off."""
    budget: float = 0.05
    """Most extra attempts hedging may add, as a share of attempts.
    Env AGENTMESH_HEDGE_BUDGET. Default 0.05."""
    min_samples: int = 20
    """Latencies a capability needs before its percentile is trusted. Default 20."""

    def delay(self, window: LatencyWindow) -> float | None:
        """Seconds to wait before hedging an attempt; None for no hedge."""
        match self.after:
            case HedgeAtPercentile(quantile):
                return window.percentile(quantile) if len(window) >= self.min_samples else None
            case HedgeAfterDelay(seconds):
                return seconds
            case _:
                return None


class Hedger:
    """Races an attempt that runs past the hedge delay against a copy on another worker."""

    def __init__(self, policy: HedgePolicy, observer: DispatchObserver) -> None:
        self.policy = policy
        self.observer = observer
        self._budget = TokenBucket(policy.budget, 1.0)
        self._latencies: dict[str, LatencyWindow] = {}

    def observe(self, capability: str, seconds: float) -> None:
        """A successful attempt's latency, for the capability's running p95."""
        self._window(capability).observe(seconds)

    def _window(self, capability: str) -> LatencyWindow:
        window = self._latencies.get(capability)
        if window is None:
            window = self._latencies[capability] = LatencyWindow()
        return window

    async def race(
        self,
        capability: str,
        first: WorkerRecord,
        run_on: RunOn,
        second: Callable[[], WorkerRecord | None],
    ) -> tuple[WorkerRecord, ExecuteResult]:
        """The attempt on `first`, raced by one on `second()` if it runs past the delay.

        `second` names a free worker for the copy, or None; the copy is sent
        only within the budget. The first success wins and the other copy is
        cancelled (and awaited, so that it hands its slot back); when both
        fail, the first attempt's error stands.
        """
        delay = self.policy.delay(self._window(capability))
        if delay is None:
            return first, await run_on(first, False)
        self._budget.deposit()
        primary = asyncio.ensure_future(run_on(first, False))
        racers = {primary: first}
        try:
            done, _ = await asyncio.wait({primary}, timeout=delay)
            other = None if done else second()
            if other is None or not self._budget.withdraw():
                return first, await primary
            self.observer.hedged(capability)
            racers[asyncio.ensure_future(run_on(other, True))] = other
            pending = set(racers)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is None:
                        return racers[task], task.result()
            return first, primary.result()  # both failed: raises the first attempt's error
        finally:
            losers = [task for task in racers if not task.done()]
            for task in losers:
                task.cancel()
            await asyncio.gather(*losers, return_exceptions=True)
