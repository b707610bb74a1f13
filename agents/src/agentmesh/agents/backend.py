"""The model backend interface that every worker runs its skills through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agentmesh.server.skills import Skill
from agentmesh.usage import Usage


@dataclass(frozen=True)
class BackendResult:
    """What one skill run produced."""

    output: dict[str, Any]
    """The skill's output, valid against its output schema."""
    usage: Usage
    model: str
    """The model that answered; "" for backends without one."""


class Backend(Protocol):
    """Something that runs skills: offline libraries, a simulated model, or a real one."""

    name: str
    """Short backend name, e.g. "builtin"."""
    model: str
    """The model behind it; "" for backends without one."""
    input_price_per_mtok: float
    """US dollars per million input tokens (0 without a model)."""
    output_price_per_mtok: float
    """US dollars per million output tokens (0 without a model)."""

    def capabilities(self) -> frozenset[str]:
        """The skills this backend can run."""
        ...

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        """Run one skill on input already valid against its input schema."""
        ...
