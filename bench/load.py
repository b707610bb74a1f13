"""Offered load: open-loop Poisson arrivals, closed-loop saturation, interleaved rounds.

A call is an async function that makes one request and returns how many
attempts it took; an `AgentmeshError` is a failed request. Every generator
is bounded: open-loop draws its arrivals up front, closed-loop stops at a
fixed time, and every call carries its own gRPC deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agentmesh.errors import AgentmeshError

#: One request: returns the attempts it took, raises AgentmeshError when it fails.
Call = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it."""

    sent: float
    """When it was sent, in seconds since the load began."""
    latency: float
    """Seconds from send to answer (or error)."""
    code: str = "OK"
    """The status code name; OK for a success."""
    attempts: int = 1
    """Attempts the scheduler reported (1 for direct calls and failures)."""

    @property
    def ok(self) -> bool:
        return self.code == "OK"


async def _timed(call: Call, origin: float) -> Sample:
    sent = time.perf_counter()
    try:
        attempts = await call()
    except AgentmeshError as error:
        return Sample(sent - origin, time.perf_counter() - sent, error.code_name)
    return Sample(sent - origin, time.perf_counter() - sent, attempts=attempts)


def poisson_arrivals(rate: float, duration: float, rng: random.Random) -> list[float]:
    """Arrival times (seconds from 0) of a Poisson process of `rate` per second."""
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


async def open_loop(call: Call, arrivals: Sequence[float]) -> list[Sample]:
    """Send one call at each arrival time, whatever is still in flight.

    Open loop: a slow answer does not hold back the next request, as with
    independent users. Latency is measured from the actual send.
    """
    origin = time.perf_counter()

    async def at(offset: float) -> Sample:
        await asyncio.sleep(max(0.0, origin + offset - time.perf_counter()))
        return await _timed(call, origin)

    return list(await asyncio.gather(*(at(t) for t in arrivals)))


async def closed_loop(call: Call, concurrency: int, duration: float) -> list[Sample]:
    """`concurrency` clients, each sending its next call when the last one answered."""
    origin = time.perf_counter()
    end = origin + duration
    samples: list[Sample] = []

    async def client() -> None:
        while time.perf_counter() < end:
            samples.append(await _timed(call, origin))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


def rounds(variants: Sequence[str], count: int) -> list[list[str]]:
    """The variants' order in each round: rotated by one per round.

    Interleaving spreads slow drifts of the machine (thermal, other
    processes) over every variant; rotating the order keeps any variant
    from always running first, or always right after the same neighbour.
    """
    n = len(variants)
    return [[variants[(r + i) % n] for i in range(n)] for r in range(count)]
