"""Backends by name: what `agentmesh worker --backend NAME` runs its skills through."""

from __future__ import annotations

from collections.abc import Mapping

from agentmesh.agents.backend import Backend

#: Every backend name a worker accepts.
BACKENDS = ("builtin", "sim", "echo", "openai", "anthropic")


def make_backend(name: str, env: Mapping[str, str]) -> Backend:
    """The backend called `name`, configured from `env`; ValueError naming the choices.

    `openai` and `anthropic` are model backends (see `agentmesh.agents.llm`);
    they raise ValueError, naming the variable, when their configuration is
    incomplete (such as a missing API key).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if name in ("openai", "anthropic"):
        from agentmesh.agents.llm import make_model_backend

        return make_model_backend(name, env)
    if name == "echo":
        from agentmesh.agents.echo import EchoBackend

        return EchoBackend()
    if name == "sim":
        from agentmesh.agents.simulated import SimulatedBackend, SimulatedProfile

        # The simulated model answers through the builtin backend, or (for
        # measuring the mesh alone) through echo: AGENTMESH_SIM_INNER.
        inner = env.get("AGENTMESH_SIM_INNER", "builtin")
        if inner not in ("builtin", "echo"):
            raise ValueError(f"AGENTMESH_SIM_INNER={inner!r}: choose builtin or echo")
        return SimulatedBackend(make_backend(inner, env), SimulatedProfile.from_env(env))
    from agentmesh.agents.builtin import BuiltinBackend

    return BuiltinBackend()
