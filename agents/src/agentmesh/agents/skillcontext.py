"""What a skill written in Python is given besides its input: `SkillContext`.

    async def my_skill(input: dict, context: SkillContext) -> dict:
        context.logger.info("working", extra={"chars": len(input["text"])})
        if context.seconds_left() is not None and context.seconds_left() < 1:
            ...
        answer = await context.model.generate(
            {"text": input["text"]},
            instructions="Name the main topic of the text.",
            output_schema={"type": "object", "properties": {"topic": {"type": "string"}},
                           "required": ["topic"], "additionalProperties": False},
        )
        return {"topic": answer["topic"]}

A run past its deadline, or cancelled by the scheduler, is cancelled: the
skill's coroutine gets `asyncio.CancelledError` at its next `await`, and
`context.cancelled` is set (for work handed to a thread, which cancelling
cannot stop: it should check `context.is_cancelled()`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from agentmesh.agents.backend import Backend, BackendResult
from agentmesh.errors import FailedPrecondition
from agentmesh.server.clock import Clock
from agentmesh.server.skills import Skill


class SkillModel:
    """The worker's model backend (`agentmesh worker --backend`), as a skill calls it.

    `generate()` makes one structured call: the instructions and the JSON
    Schema of the answer as the system prompt, the input as JSON; an answer
    that breaks the schema gets one repair call, and is then OUTPUT_INVALID
    (as for the built-in skills: `agents/llm.py`). The tokens and cost of
    every call are added to the subtask's usage.
    """

    def __init__(self, backend: Backend, skill: Skill) -> None:
        self.backend = backend
        """The backend itself, for what `generate` does not cover."""
        self._skill = skill
        self.calls: list[BackendResult] = []
        """Every answer so far in this run: the subtask's usage is their sum."""

    @property
    def available(self) -> bool:
        """Whether there is a model to call: the openai, anthropic or local backend."""
        from agentmesh.agents.llm import ModelBackend

        return isinstance(self.backend, ModelBackend)

    @property
    def name(self) -> str:
        """The model's name; "" without one."""
        return self.backend.model if self.available else ""

    async def generate(
        self,
        input: Mapping[str, Any],
        *,
        instructions: str | None = None,
        output_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The model's answer to `input`, valid against `output_schema` (default: the
        skill's), prompted with `instructions` (default: the skill's, else its description).

        Raises FailedPrecondition (reason NO_MODEL) on a worker without a model,
        and the model backend's errors (OUTPUT_INVALID, MODEL_TIMEOUT, ...).
        """
        if not self.available:
            raise FailedPrecondition(
                f"skill {self._skill.name} calls the model, but this worker's backend "
                f"({self.backend.name}) has none: start it with --backend openai, anthropic "
                "or local",
                reason="NO_MODEL",
                metadata={"capability": self._skill.name},
            )
        prompt = Skill(
            name=self._skill.name,
            description=self._skill.description,
            input_schema={"type": "object"},
            output_schema=dict(output_schema or self._skill.output_schema),
            instructions=instructions or self._skill.instructions,
            temperature=self._skill.temperature,
        )
        result = await self.backend.run(prompt, dict(input))
        self.calls.append(result)
        return dict(result.output)


@dataclass(frozen=True)
class SkillContext:
    """One run of a skill: which subtask, until when, and what it may use."""

    skill: str
    """The skill's name (the capability)."""
    request_id: str
    subtask_id: str
    attempt: int
    """The scheduler's attempt number, from 1 (0 when the caller gave none)."""
    deadline: float | None
    """When the run is cancelled, in seconds on `clock` (monotonic); None: no deadline.
    `seconds_left()` is usually what a skill wants."""
    cancelled: asyncio.Event
    """Set once the run is cancelled (past its deadline, or by the scheduler)."""
    logger: logging.LoggerAdapter[logging.Logger]
    """Logs as the worker does (JSON lines), with the request and subtask ids and the skill."""
    span: trace.Span
    """The OpenTelemetry span of this run; `trace.get_current_span()` is the same one."""
    model: SkillModel
    """The worker's model backend: `await context.model.generate(...)`."""
    clock: Clock = field(repr=False)

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (at least 0); None without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline - self.clock.now(), 0.0)

    def is_cancelled(self) -> bool:
        """Whether the run has been cancelled."""
        return self.cancelled.is_set()
