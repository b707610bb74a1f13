"""Configuration as frozen data, read once from the environment: the shared machinery.

Every setting has a default stated where it is defined (`scheduler.config`,
`agents.config`) and an `AGENTMESH_*` environment variable that overrides it
(see the README's configuration table). Nothing is read at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def from_env(
    cls: type[DataclassInstance],
    env: Mapping[str, str],
    prefix_overrides: Mapping[str, str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Field values found in env as AGENTMESH_<FIELD> (or a named variable), converted;
    the fields in `skip` are the caller's to read."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        name = (prefix_overrides or {}).get(f.name, f"AGENTMESH_{f.name.upper()}")
        raw = env.get(name)
        if raw is None or (raw == "" and f.name not in ("metrics_listen", "store")):
            continue
        values[f.name] = convert(f.type, raw, name)
    return values


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLEANS |= {"0": False, "false": False, "no": False, "off": False}


def convert(kind: object, raw: str, name: str) -> bool | float | int | tuple[str, ...] | Path | str:
    kind = str(kind)
    try:
        if kind == "bool":
            return _BOOLEANS[raw.strip().lower()]
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("tuple"):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        if kind.startswith("Path"):
            return Path(raw)
        return raw
    except (ValueError, KeyError):
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind}") from None
