"""How a model generates a skill's answer: the schema it is held to, its token budget,
its stop sequences and its temperature.

The skill catalogue's output schemas are the contract every answer is
validated against. A model server that turns a JSON Schema into a grammar
(llama.cpp, vLLM) can only enforce part of a schema: it bounds integers,
string lengths, array lengths, enums and patterns, but not a number's
`minimum` or `maximum`. So the schema sent to the model (`answer_schema`)
is a tighter copy of the contract, written in what a grammar enforces:

- a bounded number becomes an enum of its values in steps of `NUMBER_STEP`
  (a confidence of 0.85, never 9808174158313889);
- a two-letter language code becomes an enum of the ISO 639-1 codes;
- a date is a pattern of real dates (`DATE_PATTERN`);
- a pattern is written without escapes the converter mishandles
  (`grammar_pattern`);
- a free string gets a `maxLength` (`STRING_LENGTHS` by field name, else
  `DEFAULT_STRING_LENGTH`) and an array a `maxItems` (`DEFAULT_MAX_ITEMS`).

Every answer valid against `answer_schema` is valid against the contract,
so a tiny model held to it by a grammar answers validly by construction;
the repair call stays for servers without grammars. The bounds also size
the answer: `token_budget` is the most tokens an answer within them takes,
and a call asks for no more (a language code needs 25 tokens, not 1,024).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agentmesh.server.skills import Skill

NUMBER_STEP = 0.05
"""A bounded number is asked for in steps of this size (21 values for 0..1)."""

DEFAULT_STRING_LENGTH = 32
"""maxLength of a free string in an answer (an order id, a product, an amount's text)."""

STRING_LENGTHS: Mapping[str, int] = MappingProxyType(
    {"summary": 200, "reply": 300, "text": 400, "capability": 64}
)
"""maxLength of an answer's free top-level strings by field name: prose gets room."""

DEFAULT_MAX_ITEMS = 2
"""maxItems of an array in an answer that sets none (the entities of one ticket)."""

CHARS_PER_TOKEN = 2.0
"""A pessimistic count of characters per token, for budgets: most tokenisers average
3-4 on English, fewer on other scripts and on ids."""

STOP_SEQUENCES = ("<|im_end|>", "<|im_start|>", "<end_of_turn>")
"""Chat-turn markers that never belong in an answer: a small model given a chat template
it was not trained on writes them and carries on with an imaginary next turn."""

EXTRACTION_TEMPERATURE = 0.0
"""Temperature for skills that extract or classify: one right answer, no sampling."""

WRITING_TEMPERATURE = 0.3
"""Temperature for skills that write prose (summaries, replies, translations)."""

WRITING_SKILLS = frozenset({"summarize", "draft_reply", "translate"})

LANGUAGE_CODE_PATTERN = "^[a-z]{2}$"

DATE_PATTERN = (
    "^[12][0-9]{3}-("
    "(01|03|05|07|08|10|12)-(0[1-9]|[12][0-9]|3[01])|"
    "(04|06|09|11)-(0[1-9]|[12][0-9]|30)|"
    "02-(0[1-9]|1[0-9]|2[0-8]))$"
)
"""Real dates (years 1000-2999, no 29 February): a grammar's `format: date` lets the model
write 2024-11-31, which the contract's date check refuses."""

LANGUAGE_CODES = tuple(
    """aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu
    cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
    ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
    ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
    nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
    sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu""".split()
)
"""The ISO 639-1 codes: the values a two-letter language code is asked for in."""


def temperature(skill: Skill) -> float:
    """The temperature suited to the skill: 0 for extraction, a little for prose."""
    return WRITING_TEMPERATURE if skill.name in WRITING_SKILLS else EXTRACTION_TEMPERATURE


def answer_schema(skill: Skill) -> dict[str, Any]:
    """The skill's output schema as a grammar can enforce it (a copy; see the module)."""
    schema: dict[str, Any] = json.loads(_answer_schema_json(json.dumps(skill.output_schema)))
    return schema


@functools.cache
def _answer_schema_json(contract: str) -> str:
    return json.dumps(_tighten(json.loads(contract), ""))


def token_budget(skill: Skill) -> int:
    """The most tokens an answer valid against `answer_schema(skill)` takes."""
    return _budget(answer_schema(skill))


def _tighten(schema: Any, field: str, top: bool = True) -> Any:
    """A copy of `schema` in what a grammar enforces; `field` names it when `top` is a
    property of the answer itself."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if "properties" in out:
        out["properties"] = {
            k: _tighten(v, k, top and field == "") for k, v in out["properties"].items()
        }
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _tighten(out["additionalProperties"], "", False)
    if "items" in out:
        out["items"] = _tighten(out["items"], "", False)
    if kind == "array":
        out.setdefault("maxItems", DEFAULT_MAX_ITEMS)
    if kind == "number" and "minimum" in out and "maximum" in out:
        return {"enum": _steps(float(out["minimum"]), float(out["maximum"]))}
    if out.get("pattern") == LANGUAGE_CODE_PATTERN:
        return {"enum": list(LANGUAGE_CODES)}
    if out.get("format") == "date":
        del out["format"]
        out["pattern"] = DATE_PATTERN
    if "pattern" in out:
        out["pattern"] = grammar_pattern(out["pattern"])
    strings = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if strings and not {"enum", "pattern", "format", "maxLength"} & out.keys():
        out["maxLength"] = (
            STRING_LENGTHS.get(field, DEFAULT_STRING_LENGTH) if top else DEFAULT_STRING_LENGTH
        )
    return out


def grammar_pattern(pattern: str) -> str:
    """The same regular expression without the escapes llama.cpp's grammar converter
    mishandles (it lets anything through for `\\+`): `[+]` for `\\+`, `[0-9]` for `\\d`."""
    return pattern.replace("\\+", "[+]").replace("\\d", "[0-9]")


def _steps(low: float, high: float) -> list[float | int]:
    count = math.floor((high - low) / NUMBER_STEP + 1e-9)
    values = [round(low + i * NUMBER_STEP, 4) for i in range(count + 1)]
    # Whole numbers as integers: the grammar writes them as the model would ("1", not "1.0").
    return [int(v) if v == int(v) else v for v in values]


def _budget(schema: Any) -> int:
    if not isinstance(schema, dict):
        return 8
    if "enum" in schema:
        return max(_tokens(json.dumps(v)) for v in schema["enum"]) + 1
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        fields = [
            _tokens(json.dumps(k)) + 2 + _budget(v) for k, v in schema.get("properties", {}).items()
        ]
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            fields.append(
                DEFAULT_MAX_ITEMS * (_tokens(DEFAULT_STRING_LENGTH * "x") + _budget(extra))
            )
        # Each field may come with a newline and indentation: a token or two.
        return 2 + sum(f + 2 for f in fields)
    if kind == "array":
        return 2 + int(schema.get("maxItems", DEFAULT_MAX_ITEMS)) * (
            _budget(schema.get("items")) + 2
        )
    if "maxLength" in schema:
        return _tokens(int(schema["maxLength"]) * "x") + 2
    if "pattern" in schema or "format" in schema:
        return 12
    return 8


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)
