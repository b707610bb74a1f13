"""The wiring of a plan fragment's steps: which input fields come from which outputs.

A step of a fragment (`WorkerService.ExecuteStream`, `ExecuteStreamSubtask.after`
and `.wiring`) waits for the steps it comes after, then has some of its input
fields set from their outputs. Each wired field tries its sources in order
and takes the first that resolves, or, with `collect`, a list of every
source that resolves; with none, its default, or it is left out. A source
is a reference `steps.<subtask_id>[.field...]` into the output of a step
named in `after` (read by the shared `agentmesh.server.refs`, as the
scheduler reads a plan's bindings), or a literal value.

Plain data, no protobuf: the servicer converts (`convert.wiring_from_proto`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from agentmesh.errors import FieldViolation
from agentmesh.server.refs import MISSING, resolve_ref

K = TypeVar("K")

_STEPS = "steps"


@dataclass(frozen=True)
class Source:
    """Where a wired field's value may come from: a reference, or else a literal value."""

    ref: str | None = None
    """`steps.<subtask_id>[.field...]`; None for a literal."""
    value: Any = None
    """The literal value (a JSON value), when `ref` is None."""


@dataclass(frozen=True)
class Wire:
    """One input field of a fragment step and the sources of its value."""

    field: str
    sources: tuple[Source, ...] = ()
    collect: bool = False
    """A list of every source that resolves, rather than the first."""
    default: Any = MISSING
    """The value when no source resolves (not with `collect`); MISSING leaves the field
    out."""


def wiring_violations(after: Sequence[str], wiring: Sequence[Wire]) -> list[FieldViolation]:
    """What is wrong with a step's wiring: an empty field name, a field wired twice, a
    reference that is not `steps.<id>` of a step in `after`. (A default with `collect`
    does not apply, and is not a fault: a collected field is always a list.)

    Named as the ExecuteStreamSubtask's fields are (`wiring[0].sources[1].ref`).
    """
    violations: list[FieldViolation] = []
    named = set(after)
    seen: set[str] = set()
    for i, wire in enumerate(wiring):
        where = f"wiring[{i}]"
        if not wire.field:
            violations.append(FieldViolation(f"{where}.field", "must name an input field"))
        elif wire.field in seen:
            violations.append(FieldViolation(f"{where}.field", f"{wire.field!r} is wired twice"))
        seen.add(wire.field)
        for j, source in enumerate(wire.sources):
            if source.ref is None:
                continue
            parts = source.ref.split(".")
            if len(parts) < 2 or parts[0] != _STEPS or parts[1] not in named:
                violations.append(
                    FieldViolation(
                        f"{where}.sources[{j}].ref",
                        f"{source.ref!r} must be steps.<subtask_id>[.field...] naming a "
                        f"subtask in `after` ({', '.join(after) or 'none'})",
                    )
                )
    return violations


def resolve_wiring(wiring: Sequence[Wire], outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The wired input fields, from the outputs of the steps in `after` by subtask id.

    A field whose sources all resolve to nothing takes its default, or is
    left out; a collected field is a list, empty when nothing resolves.
    """
    resolved: dict[str, Any] = {}
    for wire in wiring:
        values = (_resolve(source, outputs) for source in wire.sources)
        if wire.collect:
            resolved[wire.field] = [value for value in values if value is not MISSING]
            continue
        value = next((value for value in values if value is not MISSING), wire.default)
        if value is not MISSING:
            resolved[wire.field] = value
    return resolved


def _resolve(source: Source, outputs: Mapping[str, Any]) -> Any:
    if source.ref is None:
        return source.value
    return resolve_ref(source.ref, {}, outputs)


def stuck(after: Mapping[K, Collection[K]]) -> set[K]:
    """The steps that can never start: those on a cycle of `after`, and those after them.

    `after` maps each step that waits to the steps it waits for; a step it
    names that is not a key waits for nothing here (it runs, or it is
    missing and answered on its own).
    """
    left = dict(after)
    progress = True
    while progress:
        progress = False
        for step, waits_for in list(left.items()):
            if not any(other in left for other in waits_for):
                del left[step]
                progress = True
    return set(left)
