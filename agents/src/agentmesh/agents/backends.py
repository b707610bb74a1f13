"""Backends by name: what `agentmesh worker --backend NAME` runs its skills through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads BACKENDS for every command: import no backend for it
    from agentmesh.agents.backend import Backend
    from agentmesh.agents.llm import ModelBackend

#: Every backend name a worker accepts.
BACKENDS = ("builtin", "sim", "echo", "openai", "anthropic", "local")


def make_backend(name: str, env: Mapping[str, str]) -> Backend:
    """The backend called `name`, configured from `env`; ValueError naming the choices.

    `openai` and `anthropic` are model backends (see `agentmesh.agents.llm`);
    they raise ValueError, naming the variable, when their configuration is
    incomplete (such as a missing API key) or their SDK is not installed.
    `local` is the openai backend on the local llama.cpp server (see
    `agentmesh.agents.localmodel`) at AGENTMESH_MODEL_BASE_URL, with the model
    name, token limit and sampling that suit it unless set.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    try:
        return _make(name, env)
    except ModuleNotFoundError as error:
        if (error.name or "agentmesh").startswith("agentmesh"):
            raise
        extra = name if name in ("openai", "anthropic") else "builtin"
        raise ValueError(
            f"the {name} backend needs {error.name!r}, which is not installed: "
            f"pip install 'agentmesh-agents[{extra}]'"
        ) from None


def _make(name: str, env: Mapping[str, str]) -> Backend:
    if name == "local":
        from agentmesh.agents.localmodel import WORKER_ENV

        return _make("openai", {**WORKER_ENV, **env})
    if name in ("openai", "anthropic"):
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
        return SimulatedBackend(_make(inner, env), SimulatedProfile.from_env(env))
    from agentmesh.agents.builtin import BuiltinBackend

    return BuiltinBackend()


def make_model_backend(provider: str, env: Mapping[str, str]) -> ModelBackend:
    """The `openai` or `anthropic` backend configured from `env`; ValueError if misconfigured."""
    from agentmesh.agents.model_config import ModelConfig
    from agentmesh.agents.prices import price_for
    from agentmesh.agents.serverinfo import server_slots

    config = ModelConfig.from_env(provider, env)
    api_key = config.api_key(env)
    price = price_for(config.model, env)
    backend: ModelBackend
    if provider == "openai":
        from agentmesh.agents.openai_backend import OpenAIBackend

        backend = OpenAIBackend(config, price, api_key)
    else:
        from agentmesh.agents.anthropic_backend import AnthropicBackend

        backend = AnthropicBackend(config, price, api_key)
    if backend.concurrency is None and config.base_url:
        backend.concurrency = server_slots(config.base_url, api_key)
    return backend
