"""A backend that behaves like a slow or flaky model, for load tests and fault drills.

It answers through another backend (the builtin one by default), after a
latency drawn from a seeded log-normal distribution, fails a share of calls
with UNAVAILABLE, and reports tokens (about four characters each) and their
cost at the prices it is given. Real worker processes running it behave, on the
wire, like workers calling a model: that is what load tests, benchmarks and
fault tests need, with no model and no network.

A subtask whose input carries `sim_latency_ms` (`LATENCY_FIELD`: a number of
milliseconds, 0 or more) takes that long instead of a drawn latency, so
that a caller knows each subtask's latency exactly (the fan-out benchmark
compares a request's latency with its slowest subtask's). The field is an
instruction to the simulation, not content: the inner backend does not see
it and it counts no tokens. Any other value is refused with
INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentmesh.agents.backend import Backend, BackendResult
from agentmesh.errors import FieldViolation, InvalidArgument, Unavailable
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage

LATENCY_FIELD = "sim_latency_ms"
"""The input field that sets one subtask's simulated latency, in milliseconds."""


@dataclass(frozen=True)
class SimulatedProfile:
    latency: float = 0.05
    """Median latency in seconds (a subtask whose input has `sim_latency_ms` takes that
    instead). Env AGENTMESH_SIM_LATENCY. Default 0.05 s."""
    sigma: float = 0.25
    """Log-normal shape: 0 is a fixed latency. Env AGENTMESH_SIM_SIGMA. Default 0.25."""
    error_rate: float = 0.0
    """Share of calls answered UNAVAILABLE. Env AGENTMESH_SIM_ERROR_RATE. Default 0."""
    seed: int | None = None
    """Seed of the random source; none draws one. Env AGENTMESH_SIM_SEED."""
    outage: tuple[float, float] | None = None
    """A window (start, end), in seconds after the backend starts, in which every call
    fails with UNAVAILABLE. Env AGENTMESH_SIM_OUTAGE="start,end". Default none."""
    input_price_per_mtok: float = 0.0
    """Price the simulated model charges per million input tokens, in US dollars.
    Env AGENTMESH_SIM_INPUT_PRICE. Default 0."""
    output_price_per_mtok: float = 0.0
    """Same, per million output tokens. Env AGENTMESH_SIM_OUTPUT_PRICE. Default 0."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SimulatedProfile:
        seed = env.get("AGENTMESH_SIM_SEED")
        return cls(
            latency=float(env.get("AGENTMESH_SIM_LATENCY", cls.latency)),
            sigma=float(env.get("AGENTMESH_SIM_SIGMA", cls.sigma)),
            error_rate=float(env.get("AGENTMESH_SIM_ERROR_RATE", cls.error_rate)),
            seed=int(seed) if seed else None,
            outage=_window(env.get("AGENTMESH_SIM_OUTAGE", "")),
            input_price_per_mtok=float(env.get("AGENTMESH_SIM_INPUT_PRICE", 0.0)),
            output_price_per_mtok=float(env.get("AGENTMESH_SIM_OUTPUT_PRICE", 0.0)),
        )


class SimulatedBackend:
    """Delays (and sometimes fails) the calls of an inner backend."""

    name = "sim"

    def __init__(self, inner: Backend, profile: SimulatedProfile) -> None:
        self.inner = inner
        self.profile = profile
        self.model = f"sim-{inner.name}"
        self.input_price_per_mtok = profile.input_price_per_mtok
        self.output_price_per_mtok = profile.output_price_per_mtok
        self._rng = random.Random(profile.seed)
        self._started = time.monotonic()

    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities()

    def _in_outage(self) -> bool:
        if self.profile.outage is None:
            return False
        start, end = self.profile.outage
        return start <= time.monotonic() - self._started < end

    def draw_latency(self) -> float:
        p = self.profile
        return p.latency * math.exp(self._rng.gauss(0.0, p.sigma)) if p.sigma else p.latency

    def latency_for(self, data: Mapping[str, Any]) -> float:
        """Seconds the call takes: the input's `sim_latency_ms` when it has one, else a draw."""
        if LATENCY_FIELD not in data:
            return self.draw_latency()
        raw = data[LATENCY_FIELD]
        # bool is an int in Python, but true milliseconds are a mistake, not a latency.
        valid = isinstance(raw, int | float) and not isinstance(raw, bool)
        if not valid or not math.isfinite(raw) or raw < 0:
            raise InvalidArgument(
                f"{LATENCY_FIELD} must be a number of milliseconds, 0 or more; got {raw!r}",
                [FieldViolation(f"input.{LATENCY_FIELD}", "a number of milliseconds, 0 or more")],
                reason="INVALID_INPUT",
            )
        return float(raw) / 1000.0

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        await asyncio.sleep(self.latency_for(data))
        if LATENCY_FIELD in data:
            data = {k: v for k, v in data.items() if k != LATENCY_FIELD}
        if self._rng.random() < self.profile.error_rate or self._in_outage():
            raise Unavailable("simulated model outage", reason="SIMULATED_FAILURE")
        result = await self.inner.run(skill, data)
        # Tokens as a model would count them, roughly: four characters each.
        tokens_in = len(json.dumps(data, ensure_ascii=False)) // 4 + 1
        tokens_out = len(json.dumps(result.output, ensure_ascii=False)) // 4 + 1
        cost = (
            tokens_in * self.input_price_per_mtok + tokens_out * self.output_price_per_mtok
        ) / 1e6
        return dataclasses.replace(
            result, model=self.model, usage=Usage(tokens_in, tokens_out, cost)
        )


def _window(raw: str) -> tuple[float, float] | None:
    if not raw:
        return None
    try:
        start, end = (float(part) for part in raw.split(","))
    except ValueError:
        raise ValueError(f"AGENTMESH_SIM_OUTAGE={raw!r}: expected 'start,end' in seconds") from None
    return start, end
