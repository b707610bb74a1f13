"""The `anthropic` backend: the Messages API through the official SDK (`AsyncAnthropic`).

Any Anthropic-compatible server works at AGENTMESH_MODEL_BASE_URL (without
`/v1`), such as llama.cpp's `llama-server`. Structured output is asked for
as tool use: one tool whose `input_schema` is the skill's output schema,
and `tool_choice` forcing it; the tool call's input is the answer. A server
that answers with text instead (some compatible servers do not force the
tool) has the JSON parsed from the text. The repair call answers the tool
call with an error `tool_result`. The answer is streamed, so that a
cancelled or timed-out call closes its connection and the server stops
generating for it. The SDK's own retries and spans are off:
the scheduler owns retries, and the worker already records the model call
as a GenAI span.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import (
    ContentBlockParam,
    Message,
    MessageParam,
    ToolChoiceToolParam,
    ToolParam,
)

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
    """The call's optional parameters: left out when unset."""

    extra_body: dict[str, Any]


class AnthropicBackend(ModelBackend):
    """Runs skills on a Messages API model."""

    name = "anthropic"

    def __init__(
        self,
        config: ModelConfig,
        price: Price,
        api_key: str,
        client: AsyncAnthropic | None = None,
    ) -> None:
        super().__init__(config, price, api_key)
        self.client = client or AsyncAnthropic(
            api_key=api_key,
            base_url=config.base_url or None,
            timeout=config.timeout,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(**http_options(config)),
            open_telemetry=False,
        )

    async def complete(self, skill: Skill, data: Mapping[str, Any], repair: Repair | None) -> Reply:
        messages: list[MessageParam] = [{"role": "user", "content": user_prompt(data)}]
        if repair is not None:
            messages += repair_turns(repair)
        options: _Options = {}
        # The SDK no longer has a temperature parameter; compatible servers still read it.
        body = self.config.body(skill)
        if body:
            options["extra_body"] = body
        name = output_format_name(skill)
        tool_choice: ToolChoiceToolParam = {"type": "tool", "name": name}
        async with self.deadline():
            async with self.client.messages.stream(
                model=self.config.model,
                max_tokens=self.config.max_tokens_for(skill),
                system=system_prompt(skill),
                messages=messages,
                tools=[answer_tool(skill)],
                tool_choice=tool_choice,
                stop_sequences=list(generation.STOP_SEQUENCES),
                **options,
            ) as stream:
                response = await stream.get_final_message()
        return reply_from(response, name, self.config.model)

    def map_error(self, error: Exception) -> AgentmeshError | None:
        return map_anthropic_error(error, self.config, self._secret)


def answer_tool(skill: Skill) -> ToolParam:
    """The tool whose input is the skill's answer."""
    return {
        "name": output_format_name(skill),
        "description": f"Give the answer. {skill.description}",
        "input_schema": generation.answer_schema(skill),
    }


def reply_from(response: Message, tool_name: str, model: str) -> Reply:
    """A `Reply` from a `Message`: the forced tool call's input, else JSON in the text."""
    blocks = list(response.content or [])
    text = "".join(b.text for b in blocks if b.type == "text")
    call = next((b for b in blocks if b.type == "tool_use" and b.name == tool_name), None)
    usage = response.usage
    input_tokens = 0
    output_tokens = 0
    if usage is not None:
        # Cached prompt tokens are counted apart from input_tokens; they are input too.
        input_tokens = (
            (usage.input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        output_tokens = usage.output_tokens or 0
    if call is not None:
        output: Any = call.input
        turn: Any = {"id": call.id, "name": call.name, "input": call.input, "text": text}
        shown = text or json.dumps(call.input, ensure_ascii=False)
    else:
        output, turn, shown = parse_json_object(text), None, text
    return Reply(
        output=output,
        text=shown,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=response.model or model,
        truncated=response.stop_reason == "max_tokens",
        turn=turn,
    )


def repair_turns(repair: Repair) -> list[MessageParam]:
    """The invalid answer and the request to correct it, as Messages API turns."""
    call = repair.previous.turn
    if call is None:
        return [
            {"role": "assistant", "content": repair.previous.text or "(no answer)"},
            {"role": "user", "content": repair.message},
        ]
    content: list[ContentBlockParam] = []
    if call["text"]:
        content.append({"type": "text", "text": call["text"]})
    content.append(
        {"type": "tool_use", "id": call["id"], "name": call["name"], "input": call["input"]}
    )
    return [
        {"role": "assistant", "content": content},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "is_error": True,
                    "content": repair.message,
                }
            ],
        },
    ]


def map_anthropic_error(
    error: Exception, config: ModelConfig, secret: str
) -> AgentmeshError | None:
    """The agentmesh error for an `anthropic` SDK error (None for anything else)."""
    if isinstance(error, anthropic.APITimeoutError):
        return timeout_error(config)
    if isinstance(error, anthropic.APIConnectionError):
        return connection_error(config)
    if isinstance(error, anthropic.APIStatusError):
        return status_error(
            config, error.status_code, error.response.headers, error.message, secret
        )
    if isinstance(error, anthropic.AnthropicError):
        return sdk_error(config, error, secret)
    return None
