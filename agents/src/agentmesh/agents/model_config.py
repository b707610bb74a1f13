"""A model backend's settings (provider, model, base URL, key, limits), read from the env.

Shared by both providers (`openai_backend`, `anthropic_backend`) and by the
error mapping (`model_errors`), which names the settings in its messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentmesh.agents import generation
from agentmesh.server.skills import Skill

PROVIDERS = ("openai", "anthropic")
"""The model providers, each a backend of the same name."""

DEFAULT_MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}
"""The model a backend uses when AGENTMESH_MODEL is not set."""

DEFAULT_API_KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The variable a backend reads its API key from when AGENTMESH_API_KEY_ENV is not set."""

NO_KEY = "no-key"
"""Sent as the API key to a server at a base URL when no key is configured: local
servers (llama.cpp, vLLM, Ollama) usually take none, but the SDKs insist on one."""


@dataclass(frozen=True)
class ModelConfig:
    """One worker's model: which, where, and how a call is made. Read once from env."""

    provider: str
    """"openai" or "anthropic": the SDK and API used. Set by the worker's backend."""
    model: str
    """Model name sent to the API. Env AGENTMESH_MODEL. Default gpt-4.1-mini (openai),
    claude-haiku-4-5 (anthropic)."""
    base_url: str = ""
    """API base URL: any OpenAI- or Anthropic-compatible server (llama.cpp, vLLM,
    Ollama). Env AGENTMESH_MODEL_BASE_URL. Default: the provider's own API."""
    api_key_env: str = ""
    """The NAME of the environment variable holding the API key (never the key).
    Env AGENTMESH_API_KEY_ENV. Default OPENAI_API_KEY or ANTHROPIC_API_KEY."""
    temperature: float | None = None
    """Sampling temperature for every skill. Env AGENTMESH_MODEL_TEMPERATURE. Default unset:
    a skill declaring one (a declared skill's `temperature`) gets its own; otherwise a
    server at a base URL gets each skill's own (0 for extraction, 0.3 for prose), and a
    provider's API gets none and uses its default (some models take no temperature)."""
    max_tokens: int = 1024
    """Most tokens one answer may have; each skill asks for no more than its answer schema
    needs (`generation.token_budget`). Env AGENTMESH_MODEL_MAX_TOKENS. Default 1024."""
    timeout: float = 60.0
    """Seconds one model call may take. Env AGENTMESH_MODEL_TIMEOUT. Default 60 s."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """More request fields, for what a server takes beyond the SDK's parameters (such as
    OpenAI's frequency_penalty, or vLLM's and llama.cpp's sampling options).
    Env AGENTMESH_MODEL_EXTRA_BODY, a JSON object. Default none."""
    concurrency: int = 0
    """Most calls the worker has at the model at once (its capacity is capped to it).
    Env AGENTMESH_MODEL_CONCURRENCY. Default 0: what the server reports (llama.cpp's
    slots), else no cap beyond the worker's capacity."""

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown model provider {self.provider!r}; choose {PROVIDERS}")
        if not self.api_key_env:
            object.__setattr__(self, "api_key_env", DEFAULT_API_KEY_ENVS[self.provider])
        if self.max_tokens < 1:
            raise ValueError(
                f"AGENTMESH_MODEL_MAX_TOKENS must be at least 1, not {self.max_tokens}"
            )
        if not self.timeout > 0:
            raise ValueError(f"AGENTMESH_MODEL_TIMEOUT must be above 0, not {self.timeout}")
        if self.concurrency < 0:
            raise ValueError(
                f"AGENTMESH_MODEL_CONCURRENCY must be 0 or more, not {self.concurrency}"
            )

    @classmethod
    def from_env(cls, provider: str, env: Mapping[str, str]) -> ModelConfig:
        """The configuration for `provider` from AGENTMESH_MODEL* variables in `env`."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown model provider {provider!r}; choose {PROVIDERS}")
        temperature = env.get("AGENTMESH_MODEL_TEMPERATURE", "")
        return cls(
            provider=provider,
            model=env.get("AGENTMESH_MODEL") or DEFAULT_MODELS[provider],
            base_url=env.get("AGENTMESH_MODEL_BASE_URL", ""),
            api_key_env=env.get("AGENTMESH_API_KEY_ENV", ""),
            temperature=_number(env, "AGENTMESH_MODEL_TEMPERATURE", float) if temperature else None,
            max_tokens=_number(env, "AGENTMESH_MODEL_MAX_TOKENS", int, cls.max_tokens),
            timeout=_number(env, "AGENTMESH_MODEL_TIMEOUT", float, cls.timeout),
            concurrency=_number(env, "AGENTMESH_MODEL_CONCURRENCY", int, cls.concurrency),
            extra_body=_json_object(env, "AGENTMESH_MODEL_EXTRA_BODY"),
        )

    def temperature_for(self, skill: Skill) -> float | None:
        """The temperature a call for `skill` sends; None sends none."""
        if self.temperature is not None:
            return self.temperature
        if skill.temperature is not None:
            return skill.temperature
        return generation.temperature(skill) if self.base_url else None

    def max_tokens_for(self, skill: Skill) -> int:
        """The token limit of a call for `skill`: its answer's budget, within max_tokens."""
        return min(self.max_tokens, generation.token_budget(skill))

    def body(self, skill: Skill | None = None) -> dict[str, Any]:
        """The request fields the SDK has no parameter for: extra_body, and the temperature
        for providers whose SDK no longer takes one."""
        body = dict(self.extra_body)
        temperature = self.temperature if skill is None else self.temperature_for(skill)
        if temperature is not None and self.provider == "anthropic":
            body.setdefault("temperature", temperature)
        return body

    @property
    def where(self) -> str:
        """The API the model is called at, for messages."""
        return self.base_url or f"the {self.provider} API"

    def api_key(self, env: Mapping[str, str]) -> str:
        """The key from the configured variable; ValueError (naming the variable) if unset.

        A server at an explicit base URL may need no key: there, a missing key
        sends a placeholder, and a server that wants one answers 401 (MODEL_AUTH).
        """
        key = env.get(self.api_key_env, "")
        if key:
            return key
        if self.base_url:
            return NO_KEY
        raise ValueError(
            f"the {self.provider} backend needs an API key in the environment variable "
            f"{self.api_key_env} (or name another variable with AGENTMESH_API_KEY_ENV, "
            "or point AGENTMESH_MODEL_BASE_URL at a server that needs none)"
        )


def http_options(config: ModelConfig) -> dict[str, Any]:
    """The SDK's HTTP client options: no kept-alive connections to a server at a base URL.

    llama.cpp's server closes a connection after a streamed answer without saying so,
    and the next call on it would fail as unreachable; a connection on loopback costs
    next to nothing. A provider's own API keeps its connections.
    """
    if not config.base_url:
        return {}
    import httpx2

    return {"limits": httpx2.Limits(max_keepalive_connections=0)}


def _number(env: Mapping[str, str], name: str, kind: type, default: Any = None) -> Any:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not a valid {kind.__name__}"
        ) from None


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name, "")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"environment variable {name} must be a JSON object, not {raw!r}")
    return value
