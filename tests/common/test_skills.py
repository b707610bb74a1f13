"""The skill catalogue's schemas and the validation that reports field paths."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from agentmesh.server.skills import SKILLS, input_violations, output_violations

VALID_ENTITIES: dict[str, Any] = {
    "order_ids": ["ORD-123456"],
    "emails": ["anna@example.com"],
    "phone_numbers": ["+14155550132"],
    "products": ["AeroBook 14"],
    "dates": ["2025-03-03"],
    "amounts": [{"value": 249.99, "currency": "USD", "text": "$249.99"}],
}


def test_the_catalogue_holds_the_eight_skills_keyed_by_name() -> None:
    assert set(SKILLS) == {
        "extract_entities",
        "detect_language",
        "sentiment",
        "summarize",
        "classify",
        "draft_reply",
        "translate",
        "plan",
    }
    assert all(name == skill.name for name, skill in SKILLS.items())
    assert all(skill.description and skill.instructions for skill in SKILLS.values())


def test_the_catalogue_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        SKILLS["summarize"] = SKILLS["classify"]  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(SKILLS))
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(SKILLS[name].input_schema)
    Draft202012Validator.check_schema(SKILLS[name].output_schema)


def test_valid_input_has_no_violations() -> None:
    assert input_violations(SKILLS["sentiment"], {"text": "Great service!"}) == []


def test_inputs_may_carry_extra_context() -> None:
    data = {"text": "Where is my parcel?", "ticket_id": "T-1"}
    assert input_violations(SKILLS["classify"], data) == []


def test_missing_and_empty_text_are_reported() -> None:
    assert input_violations(SKILLS["sentiment"], {}) == [("input", "'text' is a required property")]
    [(field, description)] = input_violations(SKILLS["sentiment"], {"text": ""})
    assert field == "input.text"
    assert "non-empty" in description


@pytest.mark.parametrize(
    "data",
    [
        {"text": "a", "texts": ["b"]},
        {"max_sentences": 2},
    ],
    ids=["both", "neither"],
)
def test_summarize_takes_exactly_one_of_text_and_texts(data: dict[str, Any]) -> None:
    violations = input_violations(SKILLS["summarize"], data)
    assert [field for field, _ in violations] == ["input"]


def test_summarize_accepts_texts_and_bounds_max_sentences() -> None:
    skill = SKILLS["summarize"]
    assert input_violations(skill, {"texts": ["one", "two"], "max_sentences": 20}) == []
    assert [f for f, _ in input_violations(skill, {"text": "x", "max_sentences": 0})] == [
        "input.max_sentences"
    ]


def test_translate_wants_a_two_letter_target() -> None:
    violations = input_violations(SKILLS["translate"], {"text": "Hallo", "target_language": "eng"})
    assert [field for field, _ in violations] == ["input.target_language"]


def test_valid_entities_pass() -> None:
    assert output_violations(SKILLS["extract_entities"], VALID_ENTITIES) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"amounts": [{"value": "249.99", "currency": "USD", "text": "$249.99"}]},
            "output.amounts.0.value",
        ),
        (
            {"amounts": [{"value": 1, "currency": None, "text": "1", "extra": True}]},
            "output.amounts.0",
        ),
        ({"phone_numbers": ["(415) 555-0132"]}, "output.phone_numbers.0"),
        ({"dates": ["03/03/2025"]}, "output.dates.0"),
        ({"dates": ["2025-02-30"]}, "output.dates.0"),
        ({"emails": "anna@example.com"}, "output.emails"),
    ],
    ids=["value-type", "extra-field", "not-e164", "not-iso", "no-such-day", "not-a-list"],
)
def test_bad_entities_are_reported_with_their_path(change: dict[str, Any], field: str) -> None:
    violations = output_violations(SKILLS["extract_entities"], {**VALID_ENTITIES, **change})
    assert [f for f, _ in violations] == [field]


def test_a_missing_output_field_is_reported() -> None:
    entities = {k: v for k, v in VALID_ENTITIES.items() if k != "dates"}
    assert output_violations(SKILLS["extract_entities"], entities) == [
        ("output", "'dates' is a required property")
    ]


def test_outputs_are_closed() -> None:
    violations = output_violations(SKILLS["summarize"], {"summary": "ok", "model": "x"})
    assert [field for field, _ in violations] == ["output"]
    assert "model" in violations[0][1]


@pytest.mark.parametrize(
    ("skill", "output", "field"),
    [
        ("detect_language", {"language": "EN", "confidence": 0.9}, "output.language"),
        ("detect_language", {"language": "en", "confidence": 1.2}, "output.confidence"),
        ("sentiment", {"label": "angry", "score": -0.5}, "output.label"),
        ("sentiment", {"label": "negative", "score": -1.5}, "output.score"),
        ("classify", {"intent": "refunds", "urgency": "high", "confidence": 0.7}, "output.intent"),
        (
            "classify",
            {"intent": "refund", "urgency": "urgent", "confidence": 0.7},
            "output.urgency",
        ),
        ("draft_reply", {"reply": "", "language": "en"}, "output.reply"),
        ("summarize", {"summary": ""}, "output.summary"),
    ],
)
def test_out_of_range_outputs_are_reported(skill: str, output: dict[str, Any], field: str) -> None:
    assert [f for f, _ in output_violations(SKILLS[skill], output)] == [field]


def test_several_violations_are_all_reported() -> None:
    violations = output_violations(SKILLS["classify"], {"intent": "x", "urgency": "y"})
    assert sorted(f for f, _ in violations) == ["output", "output.intent", "output.urgency"]
