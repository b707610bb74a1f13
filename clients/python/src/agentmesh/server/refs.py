"""References into a request's input and its steps' outputs, as plans and fragments use them.

A reference is a dotted path: `request[.field...]` into the request's
input, `steps.<id>[.field...]` into a step's output; a list element is
addressed by its index (`steps.split.chunks.0`). The scheduler resolves a
plan's bindings with it, and a worker the wiring of a plan fragment's
steps (`WorkerService.ExecuteStream`), so that both read a path the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What a reference that resolves to nothing gives.
MISSING: Any = object()


def resolve_ref(ref: str, request: Mapping[str, Any], outputs: Mapping[str, Any]) -> Any:
    """The value a reference points at, or MISSING."""
    parts = ref.split(".")
    if parts[0] == "request":
        value: Any = request
        rest = parts[1:]
    else:
        value = outputs.get(parts[1], MISSING)
        rest = parts[2:]
    for part in rest:
        # dict first: documents are plain dicts, and the Mapping check is an ABC's.
        if isinstance(value, (dict, Mapping)):
            value = value.get(part, MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value
