"""The model backend interface that every worker runs its skills through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agentmesh.agents.skills import Skill


@dataclass(frozen=True)
class Usage:
    """Tokens and money one subtask cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class BackendResult:
    output: dict[str, Any]
    usage: Usage
    model: str


class Backend(Protocol):
    name: str
    model: str

    def capabilities(self) -> frozenset[str]:
        """The skills this backend can run."""
        ...

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult: ...
