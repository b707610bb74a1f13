"""The compiled validity check in front of the reference validator: the same verdicts."""

from typing import Any

import jsonschema_rs
import pytest

from agentmesh.server import skills
from agentmesh.server.skills import SKILLS, Skill, input_violations, output_violations
from tests.common.test_skills import VALID_ENTITIES


@pytest.mark.parametrize("name", sorted(SKILLS))
def test_every_catalogue_schema_has_a_compiled_check(name: str) -> None:
    assert all(check is not None for check in SKILLS[name].checks)


@pytest.mark.parametrize(
    "change",
    [
        {"amounts": [{"value": "249.99", "currency": "USD", "text": "$249.99"}]},
        {"phone_numbers": ["(415) 555-0132"]},
        {"dates": ["03/03/2025"]},
        {"dates": ["2025-02-30"]},  # a format, checked, not only an annotation
        {"emails": "anna@example.com"},
    ],
)
def test_the_check_refuses_what_the_reference_validator_refuses(change: dict[str, Any]) -> None:
    skill = SKILLS["extract_entities"]
    data = {**VALID_ENTITIES, **change}
    check = skill.checks[1]
    assert check is not None and not check(data)
    assert output_violations(skill, data)
    assert check(VALID_ENTITIES) and output_violations(skill, VALID_ENTITIES) == []


def test_a_schema_the_check_cannot_compile_is_judged_by_the_reference_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def cannot(*args: Any, **kwargs: Any) -> None:
        raise ValueError("unsupported")

    monkeypatch.setattr(jsonschema_rs, "Draft202012Validator", cannot)
    skill = Skill(
        name="custom",
        description="",
        input_schema={"type": "object", "required": ["text"]},
        output_schema={"type": "object"},
        instructions="",
    )
    assert skill.checks == (None, None)
    assert [f for f, _ in input_violations(skill, {})] == ["input"]
    assert input_violations(skill, {"text": "hi"}) == []
    assert skills.output_violations(skill, {"any": 1}) == []
