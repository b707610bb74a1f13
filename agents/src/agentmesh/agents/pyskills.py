"""Running skills written in Python: the `PythonSkills` backend and `WithOwnSkills`.

`PythonSkills` runs the functions `@skill` declared (`skilldef.py`), each
with its `SkillContext`. `WithOwnSkills` puts it beside the worker's
configured backend: a worker's own skills run as Python, the built-in ones
it also offers run on `--backend`, and the worker reports that backend's
name, model and prices.

What a skill does maps onto the worker's errors as a built-in skill's does:
an output that is not an object, or breaks the output schema (the core
checks it), is OUTPUT_INVALID; an agentmesh error it raises keeps its code;
any other exception is INTERNAL (reason SKILL_FAILED) with the exception's
type and message, and counts against the worker's error rate; a run past
its deadline is cancelled by the core, and so is the skill's coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from agentmesh.agents import calls
from agentmesh.agents.backend import Backend, BackendResult
from agentmesh.agents.skillcontext import SkillContext, SkillModel
from agentmesh.agents.skilldef import SkillDefinition
from agentmesh.errors import AgentmeshError
from agentmesh.server.clock import SystemClock
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage

log = logging.getLogger(__name__)

SKILL_LOGGER = "agentmesh.skills"
"""The logger a skill's `context.logger` writes to (a child per skill)."""


class PythonSkills:
    """A backend that runs skills written in Python; `model` is what `context.model` calls."""

    name = "python"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def __init__(self, definitions: Mapping[str, SkillDefinition], model: Backend) -> None:
        self.definitions = dict(definitions)
        self.model_backend = model

    def capabilities(self) -> frozenset[str]:
        return frozenset(self.definitions)

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        definition = self.definitions[skill.name]
        context = self.context(definition.skill)
        try:
            output = await definition.function(dict(data), context)
        except asyncio.CancelledError:
            context.cancelled.set()
            raise
        except AgentmeshError:
            raise
        except Exception as error:
            # The traceback is for the skill's author, in the worker's log; the caller gets
            # the exception's type and message.
            log.warning("skill %s raised", skill.name, exc_info=True)
            kind = type(error).__name__
            raise AgentmeshError(
                f"skill {skill.name} raised {kind}: {error}",
                reason="SKILL_FAILED",
                metadata={"capability": skill.name, "exception": kind},
                cause=error,
            ) from error
        if not isinstance(output, dict):
            raise AgentmeshError(
                f"skill {skill.name} returned {type(output).__name__}, not an object (a dict)",
                reason="OUTPUT_INVALID",
                metadata={"capability": skill.name},
            )
        answers = context.model.calls
        usage = Usage(
            sum(a.usage.input_tokens for a in answers),
            sum(a.usage.output_tokens for a in answers),
            sum(a.usage.cost_usd for a in answers),
        )
        return BackendResult(output, usage, answers[-1].model if answers else "")

    def context(self, skill: Skill) -> SkillContext:
        """The context of a run starting now, from the core's call (`calls.CURRENT`)."""
        call = calls.CURRENT.get()
        subtask = call.subtask if call is not None else None
        ids = {
            "skill": skill.name,
            "attempt": subtask.attempt if subtask is not None else 0,
        }
        return SkillContext(
            skill=skill.name,
            request_id=subtask.request_id if subtask is not None else "",
            subtask_id=subtask.subtask_id if subtask is not None else "",
            attempt=subtask.attempt if subtask is not None else 0,
            deadline=call.deadline if call is not None else None,
            cancelled=asyncio.Event(),
            # The JSON log lines carry the request and subtask ids already (agentmesh.server.logs).
            logger=SkillLogger(logging.getLogger(f"{SKILL_LOGGER}.{skill.name}"), ids),
            span=trace.get_current_span(),
            model=SkillModel(self.model_backend, skill),
            clock=call.clock if call is not None else SystemClock(),
        )


class SkillLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds the skill and attempt to each line, keeping the caller's `extra`."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class WithOwnSkills:
    """The worker's backend with its own skills beside it: each skill runs where it lives."""

    def __init__(self, own: PythonSkills, backend: Backend) -> None:
        self.own = own
        self.backend = backend
        self.name = backend.name
        self.model = backend.model
        self.input_price_per_mtok = backend.input_price_per_mtok
        self.output_price_per_mtok = backend.output_price_per_mtok
        # A model server's limit still caps the worker's capacity (`runtime.Worker`).
        self.concurrency: int | None = getattr(backend, "concurrency", None)

    def capabilities(self) -> frozenset[str]:
        return self.own.capabilities() | self.backend.capabilities()

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        if skill.name in self.own.definitions:
            return await self.own.run(skill, data)
        return await self.backend.run(skill, data)
