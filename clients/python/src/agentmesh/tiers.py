"""Model tiers and subtask difficulties, as the scheduler and the workers both name them.

The values are agentmesh.v1's `Tier` and `Difficulty` numbers, so that a
tier orders as its cost does (`BUILTIN < SMALL < LARGE`); the conversion
to and from the protobuf enums is `agentmesh.wire`'s.
"""

from __future__ import annotations

from enum import IntEnum


class Tier(IntEnum):
    """A worker's model tier, cheapest first; UNSPECIFIED is served as SMALL."""

    UNSPECIFIED = 0
    BUILTIN = 1
    SMALL = 2
    LARGE = 3

    @property
    def label(self) -> str:
        """The name a worker declares (AGENTMESH_TIER) and metrics show; "small" for UNSPECIFIED."""
        return "small" if self is Tier.UNSPECIFIED else self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Tier:
        """The tier named `name` (builtin, small, large); ValueError otherwise."""
        try:
            return DECLARED[name]
        except KeyError:
            raise ValueError(
                f"unknown tier {name!r}; choose one of {', '.join(DECLARED)}"
            ) from None


DECLARED = {"builtin": Tier.BUILTIN, "small": Tier.SMALL, "large": Tier.LARGE}
"""The tiers a worker may declare, by name."""


class Difficulty(IntEnum):
    """How hard a subtask is: simple work goes to the cheapest tier, nuanced to LARGE."""

    UNSPECIFIED = 0
    SIMPLE = 1
    NUANCED = 2
