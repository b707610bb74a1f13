"""The `openai` backend: Chat Completions through the official SDK (`AsyncOpenAI`).

Any OpenAI-compatible server works at AGENTMESH_MODEL_BASE_URL (with its
`/v1`), such as llama.cpp's `llama-server`, vLLM or Ollama. The answer is
asked for as structured output (`response_format` of type `json_schema`,
the skill's output schema); servers that honour it constrain the model to
the schema, and the answer is validated either way. The answer is
streamed: a cancelled or timed-out call closes its connection, which is how
a server such as llama.cpp learns to stop generating for it (a plain
request keeps its slot busy until the answer is complete). The SDK's own
retries are off: the scheduler owns retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from agentmesh.agents import generation
from agentmesh.agents.llm import (
    ModelBackend,
    Repair,
    Reply,
    output_format_name,
    parse_json_object,
    system_prompt,
    user_prompt,
)
from agentmesh.agents.model_config import ModelConfig, http_options
from agentmesh.agents.model_errors import connection_error, sdk_error, status_error, timeout_error
from agentmesh.agents.prices import Price
from agentmesh.errors import AgentmeshError
from agentmesh.server.skills import Skill


class _Options(TypedDict, total=False):
    """The call's optional parameters: left out when unset, so the server's defaults hold."""

    temperature: float
    extra_body: dict[str, Any]


class OpenAIBackend(ModelBackend):
    """Runs skills on a Chat Completions model."""

    name = "openai"

    def __init__(
        self, config: ModelConfig, price: Price, api_key: str, client: AsyncOpenAI | None = None
    ) -> None:
        super().__init__(config, price, api_key)
        self.client = client or AsyncOpenAI(
            api_key=api_key,
            base_url=config.base_url or None,
            timeout=config.timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(**http_options(config)),
        )

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(skill)},
            {"role": "user", "content": user_prompt(data)},
        ]
        if repair is not None:
            messages += [
                {"role": "assistant", "content": repair.previous.text},
                {"role": "user", "content": repair.message},
            ]
        options: _Options = {}
        temperature = self.config.temperature_for(skill)
        if temperature is not None:
            options["temperature"] = temperature
        if self.config.extra_body:
            options["extra_body"] = self.config.body()
        async with self.deadline():
            stream = await self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                max_tokens=self.config.max_tokens_for(skill),
                response_format=response_format(skill),
                stop=list(generation.STOP_SEQUENCES),
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
            async with stream:
                return await reply_from_stream(stream, self.config.model)

    def map_error(self, error: Exception) -> AgentmeshError | None:
        return map_openai_error(error, self.config, self._secret)


def response_format(skill: Skill) -> ResponseFormatJSONSchema:
    """Structured output: the answer must follow the skill's output schema, as a grammar
    can enforce it (`generation.answer_schema`)."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": output_format_name(skill),
            "schema": generation.answer_schema(skill),
        },
    }


async def reply_from_stream(stream: AsyncStream[ChatCompletionChunk], model: str) -> Reply:
    """A `Reply` from a stream of `ChatCompletionChunk`s (usage comes in the last one)."""
    parts: list[str] = []
    finish_reason = None
    served = ""
    input_tokens = output_tokens = 0
    async for chunk in stream:
        served = chunk.model or served
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta is not None:
                parts.append(delta.content or getattr(delta, "refusal", None) or "")
            finish_reason = choice.finish_reason or finish_reason
        if chunk.usage is not None:
            input_tokens = chunk.usage.prompt_tokens or 0
            output_tokens = chunk.usage.completion_tokens or 0
    text = "".join(parts)
    return Reply(
        output=parse_json_object(text),
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=served or model,
        truncated=finish_reason == "length",
    )


def map_openai_error(error: Exception, config: ModelConfig, secret: str) -> AgentmeshError | None:
    """The agentmesh error for an `openai` SDK error (None for anything else)."""
    if isinstance(error, openai.APITimeoutError):
        return timeout_error(config)
    if isinstance(error, openai.APIConnectionError):
        return connection_error(config)
    if isinstance(error, openai.APIStatusError):
        return status_error(
            config, error.status_code, error.response.headers, error.message, secret
        )
    if isinstance(error, openai.OpenAIError):
        return sdk_error(config, error, secret)
    return None
