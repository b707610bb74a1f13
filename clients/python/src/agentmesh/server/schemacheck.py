"""A fast yes-or-no check of the common JSON Schema keywords, before the full validator.

A worker checks every subtask's input and output against its skill's
schemas (`skills.py`). jsonschema's validator builds an error iterator, a
child validator per descent and a type-checker lookup per keyword even when
the instance is valid, which is nearly always. `compile_check` turns a
schema into nested plain functions answering only "valid?", for the
keywords the skill catalogue uses; a schema with any other keyword gets no
check (None) and is left to jsonschema alone.

The check may only be wrong in one direction: it may say "invalid" of a
valid instance (for instance a number type that is not an int or a
float), but never "valid" of an invalid one. Its "invalid" is therefore not
an answer: the caller then asks jsonschema for the violations, which also
keeps their paths and messages exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import FormatChecker

Check = Callable[[Any], bool]
"""Whether an instance is valid (True is certain; False means "ask jsonschema")."""

#: Keywords that only annotate: they never make an instance invalid.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples"}
)
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "oneOf",
        "pattern",
        "format",
        "minimum",
        "maximum",
    }
)


def _is_integer(value: Any) -> bool:
    # Draft 2020-12: a float with no fractional part is an integer; a bool is not a number.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: Mapping[str, Check] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "integer": _is_integer,
    "number": _is_number,
}


class _Unsupported(Exception):
    """A keyword (or keyword value) the fast check does not handle."""


def compile_check(schema: Any, formats: FormatChecker | None) -> Check | None:
    """The fast check of `schema`, or None when it uses a keyword the check does not know.

    `formats` is the validator's format checker (None: formats are not checked).
    """
    try:
        return _compile(schema, formats)
    except _Unsupported:
        return None


def _compile(schema: Any, formats: FormatChecker | None) -> Check:
    if schema is True:
        return lambda value: True
    if schema is False:
        return lambda value: False
    if not isinstance(schema, Mapping):
        raise _Unsupported
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise _Unsupported
    checks = [_keyword(name, schema[name], schema, formats) for name in schema if name in _KEYWORDS]
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _keyword(
    name: str, spec: Any, schema: Mapping[str, Any], formats: FormatChecker | None
) -> Check:
    """One keyword's check; each applies only to the types it constrains, as jsonschema's."""
    if name == "type":
        names = [spec] if isinstance(spec, str) else list(spec)
        if not all(isinstance(n, str) and n in _TYPES for n in names):
            raise _Unsupported
        kinds = [_TYPES[n] for n in names]
        if len(kinds) == 1:
            return kinds[0]
        return lambda value: any(kind(value) for kind in kinds)
    if name == "properties":
        if not isinstance(spec, Mapping):
            raise _Unsupported
        fields = [(key, _compile(sub, formats)) for key, sub in spec.items()]
        return lambda value: (
            not isinstance(value, dict)
            or all(key not in value or check(value[key]) for key, check in fields)
        )
    if name == "required":
        if not isinstance(spec, list | tuple):
            raise _Unsupported
        needed = tuple(spec)
        return lambda value: not isinstance(value, dict) or all(key in value for key in needed)
    if name == "additionalProperties":
        return _additional(spec, schema, formats)
    if name == "items":
        if "prefixItems" in schema:
            raise _Unsupported
        item = _compile(spec, formats)
        return lambda value: not isinstance(value, list) or all(item(each) for each in value)
    if name == "enum":
        return _enum(spec)
    if name in ("minLength", "maxLength"):
        if not _is_integer(spec):
            raise _Unsupported
        limit = int(spec)
        if name == "minLength":
            return lambda value: not isinstance(value, str) or len(value) >= limit
        return lambda value: not isinstance(value, str) or len(value) <= limit
    if name in ("minItems", "maxItems"):
        if not _is_integer(spec):
            raise _Unsupported
        count = int(spec)
        if name == "minItems":
            return lambda value: not isinstance(value, list) or len(value) >= count
        return lambda value: not isinstance(value, list) or len(value) <= count
    if name == "oneOf":
        return _one_of(spec)
    if name == "pattern":
        if not isinstance(spec, str):
            raise _Unsupported
        search = re.compile(spec).search
        return lambda value: not isinstance(value, str) or search(value) is not None
    if name == "format":
        if formats is None:
            return lambda value: True
        return lambda value: formats.conforms(value, spec)
    if not _is_number(spec):  # minimum, maximum
        raise _Unsupported
    if name == "minimum":
        return lambda value: not _is_number(value) or value >= spec
    return lambda value: not _is_number(value) or value <= spec


def _additional(spec: Any, schema: Mapping[str, Any], formats: FormatChecker | None) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise _Unsupported
    declared = frozenset(properties)
    if spec is True:
        return lambda value: True
    if spec is False:
        return lambda value: not isinstance(value, dict) or declared.issuperset(value)
    extra = _compile(spec, formats)
    return lambda value: (
        not isinstance(value, dict)
        or all(extra(item) for key, item in value.items() if key not in declared)
    )


def _enum(spec: Any) -> Check:
    # Only strings and null, whose equality in JSON is Python's: 1 == True is not a match
    # for jsonschema, and the full validator keeps that rule for any other members.
    if not isinstance(spec, list | tuple) or not all(m is None or isinstance(m, str) for m in spec):
        raise _Unsupported
    strings = frozenset(m for m in spec if m is not None)
    null = None in spec
    return lambda value: (value is None and null) or (isinstance(value, str) and value in strings)


def _one_of(spec: Any) -> Check:
    # Exactly one must hold, so a branch's "invalid" must be certain too: only branches of
    # `required` alone, whose check is exact for any instance (such as "text or texts").
    if not isinstance(spec, list | tuple) or not spec:
        raise _Unsupported
    if not all(isinstance(b, Mapping) and set(b) == {"required"} for b in spec):
        raise _Unsupported
    branches = [_keyword("required", branch["required"], branch, None) for branch in spec]
    return lambda value: sum(1 for branch in branches if branch(value)) == 1
