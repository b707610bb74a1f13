"""The sim backend's per-subtask latency: an input's `sim_latency_ms` replaces the draw."""

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.echo import EchoBackend
from agentmesh.agents.simulated import LATENCY_FIELD, SimulatedBackend, SimulatedProfile
from agentmesh.errors import InvalidArgument
from agentmesh.server.skills import SKILLS, Skill

#: A drawn latency far from every latency the tests ask for.
DRAWN = 7.0


class _Recorder:
    """The echo backend, keeping the inputs it was given."""

    name = "echo"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def __init__(self) -> None:
        self.inputs: list[Mapping[str, Any]] = []
        self._echo = EchoBackend()

    def capabilities(self) -> frozenset[str]:
        return self._echo.capabilities()

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        self.inputs.append(dict(data))
        return await self._echo.run(skill, data)


def _sim(inner: Any = None) -> SimulatedBackend:
    return SimulatedBackend(inner or EchoBackend(), SimulatedProfile(latency=DRAWN, sigma=0.5))


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the backend asks asyncio for, instead of waiting it."""
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return delays


async def test_the_input_latency_is_slept_instead_of_a_draw(slept: list[float]) -> None:
    sim = _sim()
    for ms in (0, 12.5, 30, 250):
        await sim.run(SKILLS["sentiment"], {"text": "x", LATENCY_FIELD: ms})
    assert slept == [0.0, 0.0125, 0.03, 0.25]


async def test_without_the_field_the_latency_is_drawn(slept: list[float]) -> None:
    await _sim().run(SKILLS["sentiment"], {"text": "x"})
    assert len(slept) == 1 and slept[0] not in (0.0, DRAWN)  # log-normal around DRAWN


async def test_the_field_does_not_reach_the_inner_backend_nor_the_tokens(
    slept: list[float],
) -> None:
    recorder = _Recorder()
    sim = _sim(recorder)
    with_field = await sim.run(SKILLS["sentiment"], {"text": "x", LATENCY_FIELD: 30})
    without = await sim.run(SKILLS["sentiment"], {"text": "x"})
    assert recorder.inputs == [{"text": "x"}, {"text": "x"}]
    assert with_field.usage == without.usage


@pytest.mark.parametrize("bad", [-1, "30", None, True, float("nan"), float("inf"), [30]])
async def test_a_bad_latency_is_refused_before_any_wait(slept: list[float], bad: object) -> None:
    with pytest.raises(InvalidArgument, match=LATENCY_FIELD) as caught:
        await _sim().run(SKILLS["sentiment"], {"text": "x", LATENCY_FIELD: bad})
    assert caught.value.violations[0].field == f"input.{LATENCY_FIELD}"
    assert slept == []
