"""Backends by name: what `agentmesh worker --backend NAME` runs its skills through."""

from __future__ import annotations

from collections.abc import Mapping

from agentmesh.agents.backend import Backend

#: Every backend name a worker accepts.
BACKENDS = ("builtin", "sim")


def make_backend(name: str, env: Mapping[str, str]) -> Backend:
    """The backend called `name`, configured from `env`; ValueError naming the choices."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    from agentmesh.agents.builtin import BuiltinBackend

    if name == "sim":
        from agentmesh.agents.simulated import SimulatedBackend, SimulatedProfile

        return SimulatedBackend(BuiltinBackend(), SimulatedProfile.from_env(env))
    return BuiltinBackend()
