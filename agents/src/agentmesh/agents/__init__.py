"""agentmesh's worker agents; `skill` and `SkillContext` are for skills written in Python.

They are imported on first use (a module `__getattr__`): the CLI imports
this package on every command and must not pay for jsonschema and the
worker's machinery to do so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmesh.agents.skillcontext import SkillContext
    from agentmesh.agents.skilldef import skill

__all__ = ["SkillContext", "skill"]


def __getattr__(name: str) -> Any:
    if name == "skill":
        from agentmesh.agents.skilldef import skill

        return skill
    if name == "SkillContext":
        from agentmesh.agents.skillcontext import SkillContext

        return SkillContext
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
