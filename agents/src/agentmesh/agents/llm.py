"""What the model backends share: configuration, prompts, structured output, errors.

A model backend runs a skill as one chat call: a system prompt made of the
skill's instructions and its output JSON Schema, and the input as JSON. The
provider modules (`openai_backend`, `anthropic_backend`) ask for structured
output in their API's own way and turn the answer into a `Reply`;
`run_structured` here validates it against the skill's output schema and,
when it is invalid, makes ONE repair call that sends the violations back.
Output still invalid after that fails with reason OUTPUT_INVALID (INTERNAL,
so the scheduler retries it on another worker or a higher tier).

Provider errors become agentmesh errors through one status table
(`model_errors.STATUS_ERRORS`), shared by both SDKs' mapping functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentmesh.agents import generation
from agentmesh.agents.backend import BackendResult
from agentmesh.agents.model_errors import excerpt, timeout_error
from agentmesh.agents.prices import Price
from agentmesh.errors import AgentmeshError
from agentmesh.server.skills import SKILLS, Skill, output_violations
from agentmesh.usage import Usage

PROVIDERS = ("openai", "anthropic")
"""The model providers, each a backend of the same name."""

DEFAULT_MODELS = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}
"""The model a backend uses when AGENTMESH_MODEL is not set."""

DEFAULT_API_KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The variable a backend reads its API key from when AGENTMESH_API_KEY_ENV is not set."""

NO_KEY = "no-key"
"""Sent as the API key to a server at a base URL when no key is configured: local
servers (llama.cpp, vLLM, Ollama) usually take none, but the SDKs insist on one."""

_MAX_REPAIR_VIOLATIONS = 10


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
    a server at a base URL gets each skill's own (0 for extraction, 0.3 for prose); a
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


# -- prompts ------------------------------------------------------------------------


def system_prompt(skill: Skill) -> str:
    """The skill's instructions and the JSON Schema its answer must follow."""
    schema = json.dumps(skill.output_schema, separators=(",", ":"))
    return (
        f"You are the {skill.name} agent of a multi-agent system. {skill.description}\n"
        f"{skill.instructions}\n"
        "The user's message is your input, as JSON. Answer with one JSON object and nothing "
        f"else; it must be valid against this JSON Schema:\n{schema}"
    )


def user_prompt(data: Mapping[str, Any]) -> str:
    """The skill's input, as the JSON the system prompt promises."""
    return json.dumps(data, ensure_ascii=False)


def output_format_name(skill: Skill) -> str:
    """The name of the skill's answer format or tool (providers allow [A-Za-z0-9_-])."""
    return skill.name


def parse_json_object(text: str) -> Any:
    """The first JSON value in a model's text (fences and chatter around it ignored), or None."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    return value


# -- structured output and repair ---------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One model answer, as a provider module saw it."""

    output: Any
    """The answer as parsed JSON (a tool call's input, or JSON in the text); None if none."""
    text: str
    """The answer as text, for the repair call and for messages."""
    input_tokens: int
    output_tokens: int
    model: str
    """The model that answered, as the server named it."""
    truncated: bool = False
    """Whether the answer was cut off at the token limit."""
    turn: Any = field(default=None, compare=False)
    """The provider's own record of this answer, to send back in a repair call."""


@dataclass(frozen=True)
class Repair:
    """What a repair call sends back: the invalid answer and what is wrong with it."""

    previous: Reply
    violations: Sequence[tuple[str, str]]

    @property
    def message(self) -> str:
        """The user turn that asks for a corrected answer."""
        lines = [f"- {path}: {excerpt(text, 200)}" for path, text in self.violations]
        shown = lines[:_MAX_REPAIR_VIOLATIONS]
        if len(lines) > len(shown):
            shown.append(f"- ... and {len(lines) - len(shown)} more")
        return (
            "Your answer is not valid against the JSON Schema:\n"
            + "\n".join(shown)
            + "\nAnswer again with only the corrected JSON object."
        )


Complete = Callable[[Skill, Mapping[str, Any], "Repair | None"], Awaitable[Reply]]
"""A provider's call: the skill, its input, and the repair to make (None for the first try)."""


def reply_violations(skill: Skill, reply: Reply) -> list[tuple[str, str]]:
    """Where the reply breaks the skill's output schema; empty if it is valid."""
    if not isinstance(reply.output, dict):
        why = "was cut off at the token limit" if reply.truncated else "is not a JSON object"
        return [("output", f"the answer {why}: {excerpt(reply.text, 200)!r}")]
    return output_violations(skill, reply.output)


async def run_structured(
    complete: Complete, skill: Skill, data: Mapping[str, Any], price: Price
) -> BackendResult:
    """Run a skill through a provider call, with one repair call if the answer is invalid.

    The usage returned (or carried by the OUTPUT_INVALID error's metadata)
    sums both calls.
    """
    replies = [await complete(skill, data, None)]
    violations = reply_violations(skill, replies[0])
    if violations:
        replies.append(await complete(skill, data, Repair(replies[0], violations)))
        violations = reply_violations(skill, replies[-1])
    input_tokens = sum(r.input_tokens for r in replies)
    output_tokens = sum(r.output_tokens for r in replies)
    usage = Usage(input_tokens, output_tokens, price.cost(input_tokens, output_tokens))
    last = replies[-1]
    if violations:
        raise AgentmeshError(
            f"model {last.model!r} gave no valid output for {skill.name} after one repair: "
            + "; ".join(f"{path}: {excerpt(text, 200)}" for path, text in violations[:5]),
            reason="OUTPUT_INVALID",
            metadata={
                "capability": skill.name,
                "model": last.model,
                "input_tokens": str(input_tokens),
                "output_tokens": str(output_tokens),
            },
        )
    return BackendResult(output=dict(last.output), usage=usage, model=last.model)


class ModelBackend:
    """A backend that runs every skill through a chat model (see the provider modules)."""

    name = ""

    def __init__(self, config: ModelConfig, price: Price, api_key: str) -> None:
        self.config = config
        self.model = config.model
        # Calls the model takes at once; the worker caps its capacity to it (None: no cap).
        self.concurrency: int | None = config.concurrency or None
        self.input_price_per_mtok = price.input_per_mtok
        self.output_price_per_mtok = price.output_per_mtok
        self._price = price
        # Kept only to redact it from provider error texts; never logged or shown.
        self._secret = api_key

    def capabilities(self) -> frozenset[str]:
        """Every skill in the catalogue: a model can try any of them."""
        return frozenset(SKILLS)

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        return await run_structured(self._complete_mapped, skill, data, self._price)

    async def _complete_mapped(
        self, skill: Skill, data: Mapping[str, Any], repair: Repair | None
    ) -> Reply:
        try:
            return await self.complete(skill, data, repair)
        except AgentmeshError:
            raise
        except Exception as error:
            mapped = self.map_error(error)
            if mapped is None:
                raise
            raise mapped from error

    @contextlib.asynccontextmanager
    async def deadline(self) -> AsyncIterator[None]:
        """AGENTMESH_MODEL_TIMEOUT over a whole call (the SDKs' timeouts bound each read of
        a stream, not the answer); its expiry closes the call and is MODEL_TIMEOUT."""
        try:
            async with asyncio.timeout(self.config.timeout):
                yield
        except TimeoutError:
            raise timeout_error(self.config) from None

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        """One call to the model. Provider modules implement this."""
        raise NotImplementedError

    def map_error(self, error: Exception) -> AgentmeshError | None:
        """The agentmesh error for an SDK error; None for errors that are not the SDK's."""
        raise NotImplementedError


def make_model_backend(provider: str, env: Mapping[str, str]) -> ModelBackend:
    """The `openai` or `anthropic` backend configured from `env`; ValueError if misconfigured."""
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
