"""What the model backends share: prompts, structured output, errors (settings: `model_config`).

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

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.model_config import ModelConfig
from agentmesh.agents.model_errors import excerpt, timeout_error
from agentmesh.agents.prices import Price
from agentmesh.errors import AgentmeshError
from agentmesh.server.skills import SKILLS, Skill, output_violations
from agentmesh.usage import Usage

_MAX_REPAIR_VIOLATIONS = 10


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
