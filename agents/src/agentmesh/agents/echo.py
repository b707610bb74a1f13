"""A backend that answers every skill at once with a fixed, schema-valid output.

For measuring the mesh itself: with no work behind a subtask, what remains
is the cost of scheduling, queueing and the gRPC hops (the benchmarks'
"echo" and "no-op" workers). It cannot plan.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

from agentmesh.agents.backend import BackendResult
from agentmesh.errors import Unimplemented
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage

#: The smallest valid output of each skill.
OUTPUTS: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(
    {
        "extract_entities": {
            "order_ids": [],
            "emails": [],
            "phone_numbers": [],
            "products": [],
            "dates": [],
            "amounts": [],
        },
        "detect_language": {"language": "en", "confidence": 1.0},
        "sentiment": {"label": "neutral", "score": 0.0},
        "summarize": {"summary": "-"},
        "classify": {"intent": "general", "urgency": "normal", "confidence": 0.5},
        "draft_reply": {"reply": "-", "language": "en"},
        "translate": {"text": "-", "language": "en"},
    }
)


class EchoBackend:
    name = "echo"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def capabilities(self) -> frozenset[str]:
        return frozenset(OUTPUTS)

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        output = OUTPUTS.get(skill.name)
        if output is None:
            raise Unimplemented(f"the echo backend cannot {skill.name}")
        return BackendResult(output=dict(output), usage=Usage(), model="")
