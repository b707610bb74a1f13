"""Prompts, structured-output requests and the one-repair flow, with fake SDK clients.

The fakes stand in for `AsyncOpenAI` / `AsyncAnthropic` only at the
streaming call (`create(stream=True)`, `messages.stream`) and answer with
the SDKs' own types.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletionChunk

from agentmesh.agents import generation
from agentmesh.agents.anthropic_backend import AnthropicBackend
from agentmesh.agents.backends import BACKENDS
from agentmesh.agents.llm import (
    ModelConfig,
    Repair,
    Reply,
    parse_json_object,
    system_prompt,
    user_prompt,
)
from agentmesh.agents.openai_backend import OpenAIBackend
from agentmesh.agents.prices import Price
from agentmesh.errors import AgentmeshError, ResourceExhausted
from agentmesh.server.skills import SKILLS

SENTIMENT = SKILLS["sentiment"]
VALID = {"label": "negative", "score": -0.8}
INVALID = {"label": "furious", "score": 7}
PRICE = Price(input_per_mtok=2.0, output_per_mtok=10.0)


class FakeStream:
    """An SDK stream: async iteration over events, `async with` closes it."""

    def __init__(self, events: list[Any], hang: bool = False) -> None:
        self.events = events
        self.hang = hang
        self.closed = False

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        for event in self.events:
            yield event
        if self.hang:  # a model still generating
            await asyncio.Event().wait()


class FakeOpenAI:
    """`client.chat.completions.create(**kwargs, stream=True)` answering from a script."""

    def __init__(
        self, *answers: str | Exception, finish_reason: str = "stop", hang: bool = False
    ) -> None:
        self.answers = list(answers)
        self.finish_reason = finish_reason
        self.hang = hang
        self.calls: list[dict[str, Any]] = []
        self.streams: list[FakeStream] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    async def _create(self, **kwargs: Any) -> FakeStream:
        self.calls.append(kwargs)
        assert kwargs["stream"] is True and kwargs["stream_options"] == {"include_usage": True}
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        head = {"id": f"chatcmpl-{len(self.calls)}", "object": "chat.completion.chunk"}
        head |= {"created": 0, "model": "served-model"}
        # The answer in two pieces, the finish reason, then usage alone (include_usage).
        half = len(answer) // 2
        pieces = [
            {"index": 0, "delta": {"role": "assistant", "content": answer[:half]}},
            {"index": 0, "delta": {"content": answer[half:]}, "finish_reason": self.finish_reason},
        ]
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        chunks = [ChatCompletionChunk.model_validate({**head, "choices": [p]}) for p in pieces]
        if self.hang:
            chunks = chunks[:1]
        else:
            last = {**head, "choices": [], "usage": usage}
            chunks.append(ChatCompletionChunk.model_validate(last))
        stream = FakeStream(chunks, hang=self.hang)
        self.streams.append(stream)
        return stream


class FakeMessageStream:
    """`client.messages.stream(...)`: entering sends the request, the final message is the
    answer; leaving closes it."""

    def __init__(self, client: FakeAnthropic, kwargs: dict[str, Any]) -> None:
        self.client = client
        self.kwargs = kwargs
        self.closed = False

    async def __aenter__(self) -> FakeMessageStream:
        self.message = await self.client.answer(**self.kwargs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def get_final_message(self) -> Message:
        if self.client.hang:
            await asyncio.Event().wait()
        return self.message


class FakeAnthropic:
    """`client.messages.stream(**kwargs)` answering with tool calls or text from a script."""

    def __init__(self, *answers: dict[str, Any] | str | Exception, hang: bool = False) -> None:
        self.answers = list(answers)
        self.hang = hang
        self.calls: list[dict[str, Any]] = []
        self.streams: list[FakeMessageStream] = []
        self.messages = SimpleNamespace(stream=self._stream)

    def _stream(self, **kwargs: Any) -> FakeMessageStream:
        stream = FakeMessageStream(self, kwargs)
        self.streams.append(stream)
        return stream

    async def answer(self, **kwargs: Any) -> Message:
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, str):
            content = [{"type": "text", "text": answer}]
        else:
            name = kwargs["tool_choice"]["name"]
            content = [{"type": "tool_use", "id": f"toolu_{len(self.calls)}", "name": name}]
            content[0]["input"] = answer
        return Message.model_validate(
            {
                "id": f"msg_{len(self.calls)}",
                "type": "message",
                "role": "assistant",
                "model": "served-model",
                "content": content,
                "stop_reason": "tool_use" if not isinstance(answer, str) else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 60,
                    "cache_read_input_tokens": 40,
                    "output_tokens": 20,
                },
            }
        )


def openai_backend(client: FakeOpenAI, **config: Any) -> OpenAIBackend:
    cfg = ModelConfig(provider="openai", model="gpt-test", **config)
    return OpenAIBackend(cfg, PRICE, "sk-unit", client=client)


def anthropic_backend(client: FakeAnthropic, **config: Any) -> AnthropicBackend:
    cfg = ModelConfig(provider="anthropic", model="claude-test", **config)
    return AnthropicBackend(cfg, PRICE, "sk-ant-unit", client=client)


# -- prompts and parsing --------------------------------------------------------------


def test_system_prompt_states_the_instructions_and_the_schema() -> None:
    for skill in SKILLS.values():
        prompt = system_prompt(skill)
        assert skill.instructions in prompt
        schema = json.loads(prompt[prompt.index("{") :])
        assert schema == skill.output_schema


def test_user_prompt_is_the_input_as_json() -> None:
    data = {"text": "Mein Laptop ist kaputt", "max_sentences": 2}
    assert json.loads(user_prompt(data)) == data
    assert "Mein Laptop" in user_prompt(data)  # not \\u-escaped: fewer tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('Sure! Here it is: {"a": {"b": [1, 2]}} Hope that helps.', {"a": {"b": [1, 2]}}),
        ("[1, 2]", [1, 2]),
        ("no json here", None),
        ('{"a": 1', None),
        ("", None),
    ],
)
def test_parse_json_object(text: str, expected: Any) -> None:
    assert parse_json_object(text) == expected


def test_repair_message_lists_the_violations() -> None:
    previous = Reply(INVALID, json.dumps(INVALID), 1, 1, "m")
    violations = [(f"output.field{i}", "is wrong") for i in range(15)]
    message = Repair(previous, violations).message
    assert "output.field0: is wrong" in message
    assert "output.field9" in message and "output.field10" not in message
    assert "5 more" in message


def test_model_backends_offer_every_skill_in_the_catalogue() -> None:
    assert {"openai", "anthropic"} <= set(BACKENDS)
    backend = openai_backend(FakeOpenAI())
    assert backend.capabilities() == frozenset(SKILLS)
    assert "translate" in backend.capabilities()


def test_config_from_env() -> None:
    env = {
        "AGENTMESH_MODEL": "llama-3",
        "AGENTMESH_MODEL_BASE_URL": "http://127.0.0.1:8080/v1",
        "AGENTMESH_API_KEY_ENV": "VLLM_KEY",
        "AGENTMESH_MODEL_TEMPERATURE": "0.2",
        "AGENTMESH_MODEL_MAX_TOKENS": "300",
        "AGENTMESH_MODEL_TIMEOUT": "12.5",
        "AGENTMESH_MODEL_EXTRA_BODY": '{"top_k": 40}',
    }
    config = ModelConfig.from_env("openai", env)
    base_url = env["AGENTMESH_MODEL_BASE_URL"]
    expected = ModelConfig("openai", "llama-3", base_url, "VLLM_KEY", 0.2, 300, 12.5, {"top_k": 40})
    assert config == expected
    defaults = ModelConfig.from_env("anthropic", {})
    assert defaults.api_key_env == "ANTHROPIC_API_KEY"
    assert defaults.temperature is None and defaults.max_tokens == 1024
    with pytest.raises(ValueError, match="AGENTMESH_MODEL_MAX_TOKENS"):
        ModelConfig.from_env("openai", {"AGENTMESH_MODEL_MAX_TOKENS": "many"})


# -- openai ---------------------------------------------------------------------------


async def test_openai_asks_for_the_schema_and_reports_usage() -> None:
    client = FakeOpenAI(json.dumps(VALID))
    backend = openai_backend(client, temperature=0.0, max_tokens=16)
    result = await backend.run(SENTIMENT, {"text": "awful"})
    assert result.output == VALID
    assert result.model == "served-model"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (100, 20)
    assert result.usage.cost_usd == pytest.approx(PRICE.cost(100, 20))
    (call,) = client.calls
    assert call["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sentiment", "schema": generation.answer_schema(SENTIMENT)},
    }
    assert call["model"] == "gpt-test" and call["max_tokens"] == 16 and call["temperature"] == 0.0
    assert call["stop"] == list(generation.STOP_SEQUENCES)
    assert [m["role"] for m in call["messages"]] == ["system", "user"]
    assert json.loads(call["messages"][1]["content"]) == {"text": "awful"}


async def test_extra_body_reaches_the_request() -> None:
    extra = {"frequency_penalty": 1.0, "repeat_penalty": 1.3}
    client = FakeOpenAI(json.dumps(VALID))
    await openai_backend(client, extra_body=extra).run(SENTIMENT, {"text": "awful"})
    assert client.calls[0]["extra_body"] == extra
    fake = FakeAnthropic(VALID)
    await anthropic_backend(fake, extra_body={"top_k": 5}, temperature=0.3).run(
        SENTIMENT, {"text": "awful"}
    )
    assert fake.calls[0]["extra_body"] == {"top_k": 5, "temperature": 0.3}


@pytest.mark.parametrize("raw", ["[1]", "{oops", "3"])
def test_extra_body_must_be_a_json_object(raw: str) -> None:
    with pytest.raises(ValueError, match="AGENTMESH_MODEL_EXTRA_BODY"):
        ModelConfig.from_env("openai", {"AGENTMESH_MODEL_EXTRA_BODY": raw})


async def test_openai_omits_an_unset_temperature() -> None:
    client = FakeOpenAI(json.dumps(VALID))
    await openai_backend(client).run(SENTIMENT, {"text": "awful"})
    assert "temperature" not in client.calls[0] and "extra_body" not in client.calls[0]


async def test_openai_repairs_once_and_sums_usage() -> None:
    client = FakeOpenAI(json.dumps(INVALID), json.dumps(VALID))
    result = await openai_backend(client).run(SENTIMENT, {"text": "awful"})
    assert result.output == VALID
    assert (result.usage.input_tokens, result.usage.output_tokens) == (200, 40)
    assert result.usage.cost_usd == pytest.approx(PRICE.cost(200, 40))
    repair = client.calls[1]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2]["content"] == json.dumps(INVALID)
    assert "output.label" in repair[3]["content"] and "output.score" in repair[3]["content"]


async def test_openai_invalid_after_repair_is_output_invalid() -> None:
    client = FakeOpenAI("I'd rather not.", json.dumps(INVALID))
    with pytest.raises(AgentmeshError) as caught:
        await openai_backend(client).run(SENTIMENT, {"text": "awful"})
    error = caught.value
    assert error.code_name == "INTERNAL" and error.reason == "OUTPUT_INVALID"
    assert error.retryable  # the scheduler tries another worker or tier
    assert error.metadata["input_tokens"] == "200" and error.metadata["output_tokens"] == "40"
    assert len(client.calls) == 2  # one repair, not more
    assert "not a JSON object" in client.calls[1]["messages"][3]["content"]


async def test_openai_truncated_answer_says_so_in_the_repair() -> None:
    client = FakeOpenAI('{"label": "neg', '{"label": "neg', finish_reason="length")
    with pytest.raises(AgentmeshError, match="cut off at the token limit"):
        await openai_backend(client).run(SENTIMENT, {"text": "awful"})


async def test_openai_sdk_errors_are_mapped_in_run() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    limited = httpx2.Response(429, headers={"retry-after": "3"}, request=request)
    client = FakeOpenAI(openai.RateLimitError("Error code: 429", response=limited, body=None))
    with pytest.raises(ResourceExhausted) as caught:
        await openai_backend(client).run(SENTIMENT, {"text": "awful"})
    assert caught.value.retry_after == 3.0


# -- anthropic ------------------------------------------------------------------------


async def test_anthropic_forces_the_answer_tool_and_reports_usage() -> None:
    client = FakeAnthropic(VALID)
    result = await anthropic_backend(client, max_tokens=16).run(SENTIMENT, {"text": "awful"})
    assert result.output == VALID
    # Cached prompt tokens count as input.
    assert (result.usage.input_tokens, result.usage.output_tokens) == (100, 20)
    (call,) = client.calls
    assert call["tools"] == [
        {
            "name": "sentiment",
            "description": f"Give the answer. {SENTIMENT.description}",
            "input_schema": generation.answer_schema(SENTIMENT),
        }
    ]
    assert call["stop_sequences"] == list(generation.STOP_SEQUENCES)
    assert call["tool_choice"] == {"type": "tool", "name": "sentiment"}
    assert call["system"] == system_prompt(SENTIMENT)
    assert call["max_tokens"] == 16
    assert "extra_body" not in call  # no temperature configured


async def test_anthropic_repair_answers_the_tool_call_with_an_error() -> None:
    client = FakeAnthropic(INVALID, VALID)
    result = await anthropic_backend(client).run(SENTIMENT, {"text": "awful"})
    assert result.output == VALID
    assert result.usage.input_tokens == 200 and result.usage.output_tokens == 40
    _, assistant, user = client.calls[1]["messages"]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "sentiment", "input": INVALID}
    ]
    (tool_result,) = user["content"]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_1"
    assert tool_result["is_error"] is True
    assert "output.label" in tool_result["content"]


async def test_anthropic_falls_back_to_json_in_text() -> None:
    client = FakeAnthropic("Here you go: " + json.dumps(VALID))
    result = await anthropic_backend(client).run(SENTIMENT, {"text": "awful"})
    assert result.output == VALID


async def test_anthropic_text_repair_then_output_invalid() -> None:
    client = FakeAnthropic("no idea", "still no idea")
    with pytest.raises(AgentmeshError) as caught:
        await anthropic_backend(client).run(SENTIMENT, {"text": "awful"})
    assert caught.value.reason == "OUTPUT_INVALID"
    _, assistant, user = client.calls[1]["messages"]
    assert assistant == {"role": "assistant", "content": "no idea"}
    assert user["role"] == "user" and "not a JSON object" in user["content"]


async def test_anthropic_temperature_goes_in_the_body() -> None:
    client = FakeAnthropic(VALID)
    await anthropic_backend(client, temperature=0.0).run(SENTIMENT, {"text": "awful"})
    assert client.calls[0]["extra_body"] == {"temperature": 0.0}


async def test_anthropic_overloaded_is_unavailable() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")
    overloaded = anthropic.InternalServerError(
        "Overloaded", response=httpx2.Response(529, request=request), body=None
    )
    with pytest.raises(AgentmeshError) as caught:
        await anthropic_backend(FakeAnthropic(overloaded)).run(SENTIMENT, {"text": "awful"})
    assert caught.value.code_name == "UNAVAILABLE"
