"""The `openai` backend: Chat Completions through the official SDK (`AsyncOpenAI`).

Any OpenAI-compatible server works at AGENTMESH_MODEL_BASE_URL (with its
`/v1`), such as llama.cpp's `llama-server`, vLLM or Ollama. The answer is
asked for as structured output (`response_format` of type `json_schema`,
the skill's output schema); servers that honour it constrain the model to
the schema, and the answer is validated either way. The SDK's own retries
are off: the scheduler owns retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai
from openai import AsyncOpenAI

from agentmesh.agents.llm import (
    ModelBackend,
    ModelConfig,
    Repair,
    Reply,
    connection_error,
    output_format_name,
    parse_json_object,
    sdk_error,
    status_error,
    system_prompt,
    timeout_error,
    user_prompt,
)
from agentmesh.agents.prices import Price
from agentmesh.agents.skills import Skill
from agentmesh.errors import AgentmeshError


class OpenAIBackend(ModelBackend):
    """Runs skills on a Chat Completions model."""

    name = "openai"

    def __init__(self, config: ModelConfig, price: Price, api_key: str, client: Any = None) -> None:
        super().__init__(config, price, api_key)
        self.client = client or AsyncOpenAI(
            api_key=api_key,
            base_url=config.base_url or None,
            timeout=config.timeout,
            max_retries=0,
        )

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system_prompt(skill)},
            {"role": "user", "content": user_prompt(data)},
        ]
        if repair is not None:
            messages += [
                {"role": "assistant", "content": repair.previous.text},
                {"role": "user", "content": repair.message},
            ]
        options: dict[str, Any] = {}
        if self.config.temperature is not None:
            options["temperature"] = self.config.temperature
        if self.config.extra_body:
            options["extra_body"] = self.config.body()
        response = await self.client.chat.completions.create(
            model=self.config.model,
            messages=messages,
            max_tokens=self.config.max_tokens,
            response_format=response_format(skill),
            **options,
        )
        return reply_from(response, self.config.model)

    def map_error(self, error: Exception) -> AgentmeshError | None:
        return map_openai_error(error, self.config, self._secret)


def response_format(skill: Skill) -> dict[str, Any]:
    """Structured output: the answer must follow the skill's output schema."""
    return {
        "type": "json_schema",
        "json_schema": {"name": output_format_name(skill), "schema": dict(skill.output_schema)},
    }


def reply_from(response: Any, model: str) -> Reply:
    """A `Reply` from a `ChatCompletion`."""
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else None
    text = (message.content or message.refusal or "") if message is not None else ""
    usage = response.usage
    return Reply(
        output=parse_json_object(text),
        text=text,
        input_tokens=(usage.prompt_tokens or 0) if usage else 0,
        output_tokens=(usage.completion_tokens or 0) if usage else 0,
        model=response.model or model,
        truncated=choice is not None and choice.finish_reason == "length",
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
