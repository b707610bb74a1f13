import asyncio

import pytest

from agentmesh.agents.backends import make_backend
from agentmesh.agents.echo import EchoBackend
from agentmesh.agents.simulated import SimulatedBackend, SimulatedProfile
from agentmesh.errors import Unavailable
from agentmesh.server.skills import SKILLS, output_violations


async def test_echo_answers_every_skill_it_offers_with_a_valid_output() -> None:
    echo = EchoBackend()
    assert echo.capabilities() == frozenset(SKILLS) - {"plan"}
    for name in echo.capabilities():
        result = await echo.run(SKILLS[name], {"text": "x"})
        assert output_violations(SKILLS[name], result.output) == []


async def test_sim_reports_tokens_and_cost_at_its_prices() -> None:
    profile = SimulatedProfile(
        latency=0.0, sigma=0.0, input_price_per_mtok=1e6, output_price_per_mtok=0.0
    )
    sim = SimulatedBackend(EchoBackend(), profile)
    result = await sim.run(SKILLS["sentiment"], {"text": "x" * 400})
    assert result.usage.input_tokens > 100
    assert result.usage.cost_usd == pytest.approx(result.usage.input_tokens)
    assert result.model == "sim-echo"


async def test_sim_outage_window() -> None:
    sim = SimulatedBackend(
        EchoBackend(), SimulatedProfile(latency=0.0, sigma=0.0, outage=(0.0, 0.2))
    )
    with pytest.raises(Unavailable):
        await sim.run(SKILLS["sentiment"], {"text": "x"})
    await asyncio.sleep(0.25)
    assert (await sim.run(SKILLS["sentiment"], {"text": "x"})).output["label"] == "neutral"


def test_make_backend_sim_inner_and_bad_names() -> None:
    env = {"AGENTMESH_SIM_INNER": "echo", "AGENTMESH_SIM_OUTAGE": "1,2"}
    sim = make_backend("sim", env)
    assert sim.model == "sim-echo" and sim.profile.outage == (1.0, 2.0)
    with pytest.raises(ValueError, match="AGENTMESH_SIM_INNER"):
        make_backend("sim", {"AGENTMESH_SIM_INNER": "gpt"})
    with pytest.raises(ValueError, match="start,end"):
        make_backend("sim", {"AGENTMESH_SIM_OUTAGE": "soon"})
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("quantum", {})
