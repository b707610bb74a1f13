"""The compiled validity check (`Skill.checks`) gives the reference validator's verdict on
every catalogue schema, for valid objects and for each of many changes to them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from agentmesh.server.skills import SKILLS

FORMATS = Draft202012Validator.FORMAT_CHECKER

#: Valid instances of each catalogue schema: the seeds the mutations start from.
VALID: dict[str, tuple[list[Any], list[Any]]] = {
    "extract_entities": (
        [{"text": "x"}],
        [
            {
                "order_ids": ["ORD-1"],
                "emails": ["a@b.c"],
                "phone_numbers": ["+4912345"],
                "products": [],
                "dates": ["2024-02-29"],
                "amounts": [
                    {"value": 1.5, "currency": "EUR", "text": "1.50 EUR"},
                    {"value": 2, "currency": None, "text": "2"},
                ],
            }
        ],
    ),
    "detect_language": ([{"text": "x", "more": 1}], [{"language": "en", "confidence": 1}]),
    "sentiment": ([{"text": "x"}], [{"label": "negative", "score": -0.5}]),
    "summarize": (
        [{"text": "x"}, {"texts": ["a", "b"], "max_sentences": 20}],
        [{"summary": "-"}],
    ),
    "classify": (
        [{"text": "x", "sentiment": {}, "entities": {"a": 1}}],
        [{"intent": "refund", "urgency": "high", "confidence": 0}],
    ),
    "draft_reply": ([{"text": "x", "intent": {}}], [{"reply": "-", "language": "en"}]),
    "translate": ([{"text": "x", "target_language": "de"}], [{"text": "-", "language": "en"}]),
    "plan": (
        [{"goal": "g", "input_fields": ["a"], "capabilities": [{"name": "n", "x": 1}]}],
        [
            {
                "steps": [
                    {
                        "id": "a_1",
                        "capability": "sentiment",
                        "inputs": {"text": "request.text"},
                        "depends_on": [],
                        "difficulty": "simple",
                    }
                ],
                "answer": {"mood": "steps.a_1"},
            }
        ],
    ),
}

#: Values put in place of each part of a valid instance: each type, and near the edges.
ALIENS: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, -2.5, 21, 1e300, "", "x", "EN", "de", "2024-13-45",
    "2024-02-29", "+4912345", "12345", "neutral", "refund", "A b", [], ["x"], [1], [None],
    {}, {"a": 1}, {"text": "x"},
]  # fmt: skip


def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value, the root included."""
    yield at
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*at, index))


def replaced(value: Any, at: tuple[Any, ...], new: Any) -> Any:
    if not at:
        return new
    copied = copy.deepcopy(value)
    parent = copied
    for step in at[:-1]:
        parent = parent[step]
    parent[at[-1]] = new
    return copied


def mutations(value: Any) -> Iterator[Any]:
    """The instance with each part replaced by each alien, each key dropped, one key added."""
    for at in paths(value):
        for alien in ALIENS:
            yield replaced(value, at, alien)
        parent = value
        for step in at[:-1]:
            parent = parent[step]
        if at and isinstance(parent, dict):
            dropped = copy.deepcopy(value)
            holder = dropped
            for step in at[:-1]:
                holder = holder[step]
            del holder[at[-1]]
            yield dropped
    for at in paths(value):
        target = value
        for step in at:
            target = target[step]
        if isinstance(target, dict):
            yield replaced(value, at, {**target, "extra": "x"})
        if isinstance(target, list) and target:
            yield replaced(value, at, [*target, *target])


def schemas() -> Iterator[tuple[str, int, list[Any]]]:
    for name, (inputs, outputs) in VALID.items():
        yield name, 0, inputs
        yield name, 1, outputs


@pytest.mark.parametrize(("name", "side", "seeds"), list(schemas()), ids=lambda v: str(v))
def test_the_check_agrees_with_the_reference_validator_on_each_catalogue_schema(
    name: str, side: int, seeds: list[Any]
) -> None:
    skill = SKILLS[name]
    check = skill.checks[side]
    assert check is not None
    where = f"{name}.{('input', 'output')[side]}"
    validator = Draft202012Validator(
        (skill.input_schema, skill.output_schema)[side], format_checker=FORMATS
    )
    tried = valid = 0
    for seed in seeds:
        assert validator.is_valid(seed) and check(seed), seed
        for instance in mutations(seed):
            tried += 1
            expected = validator.is_valid(instance)
            valid += expected
            assert check(instance) == expected, (where, instance)
    assert tried > valid > 0  # both answers were put to the test


def test_every_catalogue_skill_has_valid_examples_here() -> None:
    assert set(VALID) == set(SKILLS)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ALIENS[11:22]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["text", "texts", "label", "score", "steps", "x"]), inner),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(VALID)), side=st.sampled_from([0, 1]), value=JSON)
def test_the_check_never_passes_what_the_reference_validator_refuses(
    name: str, side: int, value: Any
) -> None:
    skill = SKILLS[name]
    check = skill.checks[side]
    assert check is not None
    if check(value):
        assert skill.validators[side].is_valid(value)
