"""Provider SDK errors → agentmesh errors, and API keys never in a message."""

from __future__ import annotations

import email.utils

import anthropic
import httpx2
import openai
import pytest

from agentmesh.agents.anthropic_backend import map_anthropic_error
from agentmesh.agents.backends import make_model_backend
from agentmesh.agents.llm import ModelConfig
from agentmesh.agents.model_errors import DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, retry_after
from agentmesh.agents.openai_backend import map_openai_error
from agentmesh.errors import (
    AgentmeshError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

KEY = "sk-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
URL = "http://127.0.0.1:9/v1/chat/completions"

# (status, expected class, expected reason)
STATUS_TABLE = [
    (400, InvalidArgument, "MODEL_BAD_REQUEST"),
    (401, FailedPrecondition, "MODEL_AUTH"),
    (403, FailedPrecondition, "MODEL_AUTH"),
    (404, FailedPrecondition, "MODEL_NOT_FOUND"),
    (408, DeadlineExceeded, "MODEL_TIMEOUT"),
    (409, Unavailable, "MODEL_UNAVAILABLE"),
    (413, InvalidArgument, "MODEL_BAD_REQUEST"),
    (422, InvalidArgument, "MODEL_BAD_REQUEST"),
    (429, ResourceExhausted, "MODEL_RATE_LIMITED"),
    (500, Unavailable, "MODEL_UNAVAILABLE"),
    (502, Unavailable, "MODEL_UNAVAILABLE"),
    (503, Unavailable, "MODEL_UNAVAILABLE"),
    (529, Unavailable, "MODEL_UNAVAILABLE"),  # Anthropic's "overloaded"
    (418, AgentmeshError, "MODEL_ERROR"),
]


def config(provider: str) -> ModelConfig:
    return ModelConfig(provider=provider, model="some-model", base_url="http://127.0.0.1:9")


def response(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers=headers or {}, request=httpx2.Request("POST", URL))


def openai_status_error(status: int, message: str, **headers: str) -> openai.APIStatusError:
    # The SDK picks the subclass by status; the base class carries the same fields.
    return openai.APIStatusError(message, response=response(status, headers), body=None)


def anthropic_status_error(status: int, message: str, **headers: str) -> anthropic.APIStatusError:
    return anthropic.APIStatusError(message, response=response(status, headers), body=None)


MAPPERS = {
    "openai": (map_openai_error, openai_status_error),
    "anthropic": (map_anthropic_error, anthropic_status_error),
}


@pytest.mark.parametrize("provider", MAPPERS)
@pytest.mark.parametrize(("status", "cls", "reason"), STATUS_TABLE)
def test_status_table(provider: str, status: int, cls: type, reason: str) -> None:
    map_error, make = MAPPERS[provider]
    # Providers sometimes echo the key (or part of it) back in their error text.
    mapped = map_error(make(status, f"Incorrect API key provided: {KEY}"), config(provider), KEY)
    assert type(mapped) is cls
    assert mapped.reason == reason
    assert mapped.metadata["http_status"] == str(status)
    assert KEY not in mapped.message


@pytest.mark.parametrize("provider", MAPPERS)
def test_auth_failure_names_the_variable_and_not_the_key(provider: str) -> None:
    map_error, make = MAPPERS[provider]
    cfg = ModelConfig(provider=provider, model="m", api_key_env="MY_TEAM_KEY")
    mapped = map_error(make(401, f"invalid x-api-key {KEY[:8]}...{KEY[-4:]}"), cfg, KEY)
    assert isinstance(mapped, FailedPrecondition)
    assert not mapped.retryable
    assert "MY_TEAM_KEY" in mapped.message
    # The provider's text is dropped altogether for auth failures, even a masked key.
    assert KEY[:8] not in mapped.message and KEY[-4:] not in mapped.message


@pytest.mark.parametrize("provider", MAPPERS)
def test_rate_limit_carries_the_providers_retry_after(provider: str) -> None:
    map_error, make = MAPPERS[provider]
    mapped = map_error(make(429, "slow down", **{"retry-after": "7"}), config(provider), KEY)
    assert isinstance(mapped, ResourceExhausted)
    assert mapped.retry_after == 7.0
    assert mapped.retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, DEFAULT_RETRY_AFTER),
        ({"retry-after": "86400"}, MAX_RETRY_AFTER),
        ({}, DEFAULT_RETRY_AFTER),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], expected: float) -> None:
    assert retry_after(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_750_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after({"retry-after": header}, now=now) == pytest.approx(30.0, abs=1.0)


def test_openai_transport_errors() -> None:
    request = httpx2.Request("POST", URL)
    cfg = config("openai")
    assert isinstance(map_openai_error(openai.APITimeoutError(request), cfg, KEY), DeadlineExceeded)
    unreachable = map_openai_error(openai.APIConnectionError(request=request), cfg, KEY)
    assert isinstance(unreachable, Unavailable) and unreachable.reason == "MODEL_UNREACHABLE"
    other = map_openai_error(openai.OpenAIError(f"odd failure with {KEY}"), cfg, KEY)
    assert type(other) is AgentmeshError and other.reason == "MODEL_ERROR"
    assert KEY not in other.message and "[redacted]" in other.message
    assert map_openai_error(ValueError("not the SDK's"), cfg, KEY) is None


def test_anthropic_transport_errors() -> None:
    request = httpx2.Request("POST", URL)
    cfg = config("anthropic")
    timeout = map_anthropic_error(anthropic.APITimeoutError(request), cfg, KEY)
    assert isinstance(timeout, DeadlineExceeded) and timeout.reason == "MODEL_TIMEOUT"
    unreachable = map_anthropic_error(anthropic.APIConnectionError(request=request), cfg, KEY)
    assert isinstance(unreachable, Unavailable)
    other = map_anthropic_error(anthropic.AnthropicError(f"bad {KEY}"), cfg, KEY)
    assert type(other) is AgentmeshError and KEY not in other.message
    assert map_anthropic_error(KeyError("x"), cfg, KEY) is None


def test_missing_key_fails_at_startup_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        make_model_backend("openai", {})
    with pytest.raises(ValueError, match="TEAM_ANTHROPIC"):
        make_model_backend("anthropic", {"AGENTMESH_API_KEY_ENV": "TEAM_ANTHROPIC"})


def test_a_base_url_needs_no_key() -> None:
    backend = make_model_backend("openai", {"AGENTMESH_MODEL_BASE_URL": "http://127.0.0.1:9/v1"})
    assert backend.name == "openai"


def test_the_key_is_not_in_the_backend_or_config_repr() -> None:
    env = {"OPENAI_API_KEY": KEY}
    backend = make_model_backend("openai", env)
    assert KEY not in repr(backend.config)
    assert KEY not in repr(vars(backend).get("config"))
