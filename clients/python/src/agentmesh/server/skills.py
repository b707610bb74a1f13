"""The skill catalogue: what each capability takes and returns, as JSON Schema.

Every backend runs the same skills, so the schemas here are the contract
between the scheduler's workflows, the workers and the backends. Inputs
allow extra properties (a workflow may pass more context than a skill
uses); outputs do not, so a backend cannot drift from the contract
unnoticed. Validation uses JSON Schema draft 2020-12, and formats (such as
"date") are checked, not only annotations.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from agentmesh.tiers import Difficulty


@dataclass(frozen=True)
class Skill:
    """One capability a worker can offer, with its input and output contract."""

    name: str
    """Capability name, e.g. "summarize"."""
    description: str
    """One sentence on what the skill does."""
    input_schema: Mapping[str, Any]
    """JSON Schema (draft 2020-12) of the input object."""
    output_schema: Mapping[str, Any]
    """JSON Schema (draft 2020-12) of the output object."""
    instructions: str
    """A short system prompt for model backends."""
    max_input_bytes: int = 65_536
    """The largest input the skill takes, as JSON in UTF-8 bytes. The scheduler refuses a
    step whose input is larger before dispatching it, and a worker refuses it with
    INVALID_ARGUMENT: a skill's work grows with its input, and one oversized input must not
    occupy a worker for longer than a subtask's deadline. Default 64 KiB; each builtin skill
    takes at most about a second of CPU at its budget. Measured by `input_bytes`. 0 or less:
    no limit of the skill's own (a custom skill that declares none)."""
    difficulty: Difficulty = Difficulty.UNSPECIFIED
    """The difficulty of a step using the skill that sets none. Default unspecified, which
    counts as simple."""
    temperature: float | None = None
    """The sampling temperature a model backend uses for the skill (a declared skill's own);
    None: the backend's choice. AGENTMESH_MODEL_TEMPERATURE still overrides it."""

    @functools.cached_property
    def validators(self) -> tuple[Draft202012Validator, Draft202012Validator]:
        """The input and output schemas, compiled once per skill (a frozen dataclass still
        has a `__dict__` for `cached_property` to fill)."""
        formats = Draft202012Validator.FORMAT_CHECKER
        return (
            Draft202012Validator(self.input_schema, format_checker=formats),
            Draft202012Validator(self.output_schema, format_checker=formats),
        )

    @functools.cached_property
    def checks(self) -> tuple[Check | None, Check | None]:
        """Fast validity checks of the input and output schemas (`jsonschema_rs`, compiled);
        None where it cannot compile a schema. `validators` stay the judges of what is
        wrong: a check only spares them the objects it finds valid, nearly all of them."""
        return _fast_check(self.input_schema), _fast_check(self.output_schema)

    @functools.cached_property
    def schemas_key(self) -> str:
        """The input and output schemas as canonical JSON (sorted keys, no spaces): two
        skills with equal keys take and return the same objects."""
        return json.dumps(
            {"input": self.input_schema, "output": self.output_schema},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=dict,  # a read-only mapping (MappingProxyType) is written as the dict it is
        )


_TEXT = {"type": "string", "minLength": 1}
_LANGUAGE_CODE = {"type": "string", "pattern": "^[a-z]{2}$"}
_UNIT_INTERVAL = {"type": "number", "minimum": 0, "maximum": 1}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_E164 = r"^\+[1-9]\d{1,14}$"


def _object(
    properties: Mapping[str, Any], required: tuple[str, ...], *, closed: bool
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": not closed,
    }


def _input(properties: Mapping[str, Any], required: tuple[str, ...] = ("text",)) -> dict[str, Any]:
    return _object(properties, required, closed=False)


def _output(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs are closed and every field is required."""
    return _object(properties, tuple(properties), closed=True)


INTENTS = (
    "refund",
    "replacement",
    "delivery",
    "billing",
    "technical",
    "account",
    "cancellation",
    "complaint",
    "general",
)
"""The intents `classify` chooses from."""

URGENCIES = ("low", "normal", "high", "critical")
"""The urgency levels `classify` chooses from, least urgent first."""

SENTIMENT_LABELS = ("positive", "neutral", "negative")
"""The labels `sentiment` chooses from."""

_ENTITIES_OUTPUT = _output(
    {
        "order_ids": _STRINGS,
        "emails": _STRINGS,
        "phone_numbers": {"type": "array", "items": {"type": "string", "pattern": _E164}},
        "products": _STRINGS,
        "dates": {"type": "array", "items": {"type": "string", "format": "date"}},
        "amounts": {
            "type": "array",
            "items": _output(
                {
                    "value": {"type": "number"},
                    "currency": {"type": ["string", "null"]},
                    "text": {"type": "string"},
                }
            ),
        },
    }
)
_SENTIMENT_OUTPUT = _output(
    {
        "label": {"enum": list(SENTIMENT_LABELS)},
        "score": {"type": "number", "minimum": -1, "maximum": 1},
    }
)
_CLASSIFY_OUTPUT = _output(
    {
        "intent": {"enum": list(INTENTS)},
        "urgency": {"enum": list(URGENCIES)},
        "confidence": _UNIT_INTERVAL,
    }
)

_CATALOGUE = (
    Skill(
        name="extract_entities",
        description="Find order ids, emails, phone numbers, products, dates and amounts in a text.",
        input_schema=_input({"text": _TEXT}),
        output_schema=_ENTITIES_OUTPUT,
        instructions=(
            "Extract the entities from the customer's text. Phone numbers in E.164 form, "
            "dates as YYYY-MM-DD, amounts with their ISO 4217 currency code (null if unknown) "
            "and the text they were written as. Report only what the text says; use empty lists."
        ),
    ),
    Skill(
        name="detect_language",
        description="Identify the language a text is written in.",
        input_schema=_input({"text": _TEXT}),
        output_schema=_output({"language": _LANGUAGE_CODE, "confidence": _UNIT_INTERVAL}),
        instructions="Name the language of the text as an ISO 639-1 code, with your confidence.",
        max_input_bytes=262_144,  # a language model pass: about 0.03 s at the budget
    ),
    Skill(
        name="sentiment",
        description="Rate how positive or negative a text is.",
        input_schema=_input({"text": _TEXT}),
        output_schema=_SENTIMENT_OUTPUT,
        instructions=(
            "Rate the customer's sentiment: a label and a score from -1 (very negative) "
            "to 1 (very positive)."
        ),
        # The default: ticket cues and VADER, about 0.6 s at the budget.
    ),
    Skill(
        name="summarize",
        description="Summarise one text, or several texts into one summary.",
        input_schema={
            **_input(
                {
                    "text": _TEXT,
                    "texts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "max_sentences": {"type": "integer", "minimum": 1, "maximum": 20},
                },
                required=(),
            ),
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
        },
        output_schema=_output({"summary": _TEXT}),
        instructions=(
            "Summarise the text (or the texts, as one) in at most max_sentences sentences, "
            "in the language of the text, keeping names, ids and amounts exact."
        ),
        # TextRank in blocks: about 0.8 s at the budget; room for a long_document chunk
        # (at most 1/63 of a request input) and for its reduce step's 63 chunk summaries.
        max_input_bytes=131_072,
    ),
    Skill(
        name="classify",
        description="Decide what a customer wants (intent) and how urgent it is.",
        input_schema=_input(
            {"text": _TEXT, "sentiment": {"type": "object"}, "entities": {"type": "object"}}
        ),
        output_schema=_CLASSIFY_OUTPUT,
        instructions=(
            "Classify the support ticket: the customer's main intent, its urgency and your "
            "confidence. Safety, fraud and legal threats are critical."
        ),
    ),
    Skill(
        name="draft_reply",
        description="Draft a polite reply to a customer's ticket.",
        input_schema=_input(
            {
                "text": _TEXT,
                "intent": {"type": "object"},
                "entities": {"type": "object"},
                "sentiment": {"type": "object"},
                "summary": {"type": "object"},
            }
        ),
        output_schema=_output({"reply": _TEXT, "language": _LANGUAGE_CODE}),
        instructions=(
            "Write a short, polite reply from the support team that addresses the customer's "
            "intent, names the order and amounts involved, and apologises if they are upset. "
            "Promise nothing the context does not support."
        ),
        # Builtin, with nothing supplied, it works out intent, entities and sentiment too:
        # about 1 s at the budget (in the support_ticket workflow, a tenth of that).
        max_input_bytes=32_768,
    ),
    Skill(
        name="translate",
        description="Translate a text into another language.",
        input_schema=_input({"text": _TEXT, "target_language": _LANGUAGE_CODE}),
        output_schema=_output({"text": {"type": "string"}, "language": _LANGUAGE_CODE}),
        instructions=(
            "Translate the text into the target language, keeping its tone, names, ids and "
            "amounts unchanged."
        ),
    ),
    Skill(
        name="plan",
        description="Turn a free-form goal into a plan over the mesh's capabilities.",
        input_schema=_input(
            {
                "goal": _TEXT,
                "input_fields": {"type": "array", "items": {"type": "string"}},
                "capabilities": {
                    "type": "array",
                    "minItems": 1,
                    "items": _object(
                        {"name": {"type": "string"}, "description": {"type": "string"}},
                        ("name",),
                        closed=False,
                    ),
                },
            },
            ("goal", "capabilities"),
        ),
        output_schema=_output(
            {
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": _object(
                        {
                            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                            "capability": {"type": "string"},
                            "inputs": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "depends_on": {"type": "array", "items": {"type": "string"}},
                            "difficulty": {"enum": ["simple", "nuanced"]},
                        },
                        ("id", "capability", "inputs", "depends_on"),
                        closed=True,
                    ),
                },
                "answer": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
        difficulty=Difficulty.NUANCED,  # planning takes the large tier where there is one
        instructions=(
            "Plan how to reach the goal with the listed capabilities only. Give each step a "
            "lower_snake_case id, the capability it uses, its inputs as references "
            '("request.<field>" for a field of the request input, "steps.<id>" or '
            '"steps.<id>.<field>" for the output of a step it depends on), the ids of the steps '
            "it depends on, and whether it is simple or nuanced. The answer maps names to "
            "references to the steps' outputs."
        ),
    ),
)

SKILLS: Mapping[str, Skill] = MappingProxyType({skill.name: skill for skill in _CATALOGUE})
"""The catalogue, keyed by skill name."""


def input_bytes(data: Mapping[str, Any]) -> int:
    """The size of an input as JSON in UTF-8 bytes: what `Skill.max_input_bytes` counts.

    The same measure as the scheduler's request input limit (`json.dumps`
    with its default separators, characters unescaped).
    """
    return len(json.dumps(data, ensure_ascii=False).encode())


ANY_OBJECT: Mapping[str, Any] = MappingProxyType({"type": "object"})
"""The schema of a capability that declares none: any object."""


def open_skill(name: str, description: str = "") -> Skill:
    """The contract of a capability that declares none and is not in the catalogue: any
    object in and out, no input limit of its own."""
    return Skill(
        name=name,
        description=description,
        input_schema=dict(ANY_OBJECT),
        output_schema=dict(ANY_OBJECT),
        instructions="",
        max_input_bytes=0,
    )


def schema_problems(schema: Mapping[str, Any]) -> list[str]:
    """Why `schema` is not a valid JSON Schema (draft 2020-12); empty if it is."""
    validator = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    errors = sorted(validator.iter_errors(dict(schema)), key=lambda e: list(map(str, e.path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or 'the schema'}: {e.message}" for e in errors]


def input_violations(skill: Skill, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (field path, description) pairs where `data` breaks the input schema; empty if valid."""
    return _violations("input", skill.validators[0], skill.checks[0], data)


def output_violations(skill: Skill, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (field path, description) pairs where `data` breaks the output schema; empty if valid."""
    return _violations("output", skill.validators[1], skill.checks[1], data)


Check = Callable[[Any], bool]
"""Whether an object is valid against a schema."""


def _fast_check(schema: Mapping[str, Any]) -> Check | None:
    plain = json.loads(json.dumps(schema, default=dict))  # read-only mappings as dicts
    try:
        validator = jsonschema_rs.Draft202012Validator(plain, validate_formats=True)
    except Exception:  # a schema it cannot compile: the reference validator alone judges
        return None
    return validator.is_valid


def _violations(
    root: str, validator: Draft202012Validator, check: Check | None, data: Mapping[str, Any]
) -> list[tuple[str, str]]:
    if check is not None and check(data):
        return []
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.path)), e.message))
    return [(_field_path(root, error), error.message) for error in errors]


def _field_path(root: str, error: ValidationError) -> str:
    """A dotted path such as "output.amounts.0.value"; the root alone for the whole object."""
    return ".".join([root, *map(str, error.absolute_path)])
