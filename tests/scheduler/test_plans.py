import pytest

from agentmesh.errors import InvalidArgument
from agentmesh.scheduler.plans import (
    EQUALS,
    NOT_EQUALS,
    Binding,
    Condition,
    Plan,
    Step,
    condition_holds,
    find_cycle,
    resolve_bindings,
    validate_plan,
)

CAPS = frozenset({"summarize", "sentiment", "translate"})


def plan(*steps: Step, answer=None) -> Plan:
    return Plan(steps=steps, answer=answer or {})


def violations(p: Plan, max_steps: int = 10) -> list[str]:
    with pytest.raises(InvalidArgument) as error:
        validate_plan(p, CAPS, max_steps)
    return [f"{v.field}: {v.description}" for v in error.value.violations]


def test_a_good_plan_passes() -> None:
    validate_plan(
        plan(
            Step("a", "summarize", {"text": Binding(("request.text",))}),
            Step("b", "sentiment", {"text": Binding(("steps.a.summary",))}, depends_on=("a",)),
            answer={"s": Binding(("steps.b.label",))},
        ),
        CAPS,
        10,
    )


def test_cycle_is_named() -> None:
    found = violations(
        plan(
            Step("a", "summarize", depends_on=("c",)),
            Step("b", "summarize", depends_on=("a",)),
            Step("c", "summarize", depends_on=("b",)),
        )
    )
    assert len(found) == 1
    assert "cycle" in found[0] and "a -> " in found[0]


def test_unknown_capability_is_named_with_the_known_ones() -> None:
    (found,) = violations(plan(Step("a", "teleport")))
    assert found.startswith("plan.steps[0].capability")
    assert "teleport" in found and "summarize" in found


def test_bad_references_and_dependencies() -> None:
    found = violations(
        plan(
            Step("a", "summarize", {"text": Binding(("steps.b.summary",))}),
            Step("b", "summarize", depends_on=("zzz",)),
            Step("c", "summarize", {"text": Binding(("nonsense here",))}),
        )
    )
    assert any("not among its dependencies" in f for f in found)
    assert any("no step 'zzz'" in f for f in found)
    assert any("is not a reference" in f for f in found)


def test_duplicate_ids_bad_ids_empty_and_too_many() -> None:
    assert any(
        "more than once" in f
        for f in violations(plan(Step("a", "summarize"), Step("a", "summarize")))
    )
    assert any("not a step id" in f for f in violations(plan(Step("Bad-Id", "summarize"))))
    assert any("at least one step" in f for f in violations(plan()))
    many = plan(*(Step(f"s{i}", "summarize") for i in range(11)))
    assert any("at most 10 steps" in f for f in violations(many))


def test_find_cycle_on_a_dag_is_empty() -> None:
    assert find_cycle([Step("a", "x"), Step("b", "x", depends_on=("a",))]) == []


def test_bindings_resolve_first_match_collect_and_default() -> None:
    request = {"text": "hello", "items": ["x", "y"]}
    outputs = {"reply": {"reply": "hi"}, "c0": {"summary": "one"}, "c1": {"summary": "two"}}
    resolved = resolve_bindings(
        {
            "text": Binding(("request.text",)),
            "second": Binding(("request.items.1",)),
            "reply": Binding(("steps.translate.text", "steps.reply.reply")),
            "all": Binding(
                ("steps.c0.summary", "steps.missing.summary", "steps.c1.summary"), collect=True
            ),
            "n": Binding(value=3),
            "absent": Binding(("steps.nothing",)),
        },
        request,
        outputs,
    )
    assert resolved == {
        "text": "hello",
        "second": "y",
        "reply": "hi",
        "all": ["one", "two"],
        "n": 3,
    }


def test_conditions() -> None:
    outputs = {"language": {"language": "de"}}
    assert condition_holds(Condition("steps.language.language", NOT_EQUALS, "en"), {}, outputs)
    assert not condition_holds(Condition("steps.language.language", EQUALS, "en"), {}, outputs)
    # A reference to nothing (the step was skipped) fails the condition.
    assert not condition_holds(Condition("steps.gone.language", NOT_EQUALS, "en"), {}, {})
