"""The store's form of a plan: what dataclasses.asdict gives, and back to the same plan."""

import dataclasses
import json

from agentmesh.scheduler.plans import Binding, Condition, Plan, Step, plan_from_dict, plan_to_dict
from agentmesh.tiers import Difficulty


def rich_plan() -> Plan:
    """A plan that sets every field of every part."""
    return Plan(
        steps=(
            Step("a", "extract_entities", {"text": Binding(refs=("request.text",))}),
            Step(
                "b",
                "sentiment",
                {
                    "text": Binding(refs=("a.output.text", "request.text"), collect=True),
                    "hint": Binding(value={"nested": [1, 2.5, "x", None, True]}),
                },
                depends_on=("a",),
                priority=3,
                difficulty=Difficulty.NUANCED,
                optional=True,
                when=Condition("a.output.count", "gt", 2),
            ),
        ),
        answer={"mood": Binding(refs=("b.output",)), "fixed": Binding(value="ok")},
        workflow="support_ticket",
    )


def test_plan_to_dict_stores_what_asdict_would() -> None:
    """The same JSON, to the byte: files written before read the same."""
    plan = rich_plan()
    assert json.dumps(plan_to_dict(plan)) == json.dumps(dataclasses.asdict(plan))


def test_every_field_is_written() -> None:
    """A field added to a plan's parts must be added to plan_to_dict too."""
    data = plan_to_dict(rich_plan())
    assert set(data) == {f.name for f in dataclasses.fields(Plan)}
    assert set(data["steps"][1]) == {f.name for f in dataclasses.fields(Step)}
    assert set(data["steps"][1]["inputs"]["text"]) == {f.name for f in dataclasses.fields(Binding)}
    assert set(data["steps"][1]["when"]) == {f.name for f in dataclasses.fields(Condition)}


def test_the_stored_plan_reads_back_as_the_same_plan() -> None:
    plan = rich_plan()
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan
