"""Both stores: what is written comes back, and unfinished requests are found."""

from agentmesh.scheduler.plans import NOT_EQUALS, Binding, Condition, Plan, Step
from agentmesh.scheduler.records import ErrorRecord, new_record
from agentmesh.usage import Usage
from tests.support.stores import Stores

PLAN = Plan(
    steps=(
        Step("a", "summarize", {"text": Binding(("request.text",))}, difficulty=2),
        Step(
            "b",
            "translate",
            {"text": Binding(("steps.a.summary",), value="x")},
            depends_on=("a",),
            optional=True,
            when=Condition("steps.a.summary", NOT_EQUALS, ""),
        ),
    ),
    answer={"all": Binding(("steps.a.summary", "steps.b.text"), collect=True)},
    workflow="demo",
)


def test_a_request_and_its_transitions_survive_a_reopen(stores: Stores) -> None:
    store = stores.open()
    record = new_record("r1", PLAN, {"text": "hi"}, 3, 100.0, cost_budget=0.5)
    store.save_request(record, deadline=2e9)
    a = record.subtasks["a"]
    a.state, a.output, a.worker_id, a.attempts = "SUCCEEDED", {"summary": "s"}, "w1", 2
    a.usage, a.tier = Usage(10, 5, 0.01), 3
    store.save_subtask("r1", a)
    store.close()

    reopened = stores.open()
    [stored] = list(reopened.unfinished())
    loaded = stored.record
    assert stored.deadline == 2e9
    assert loaded.plan == PLAN
    assert loaded.input == {"text": "hi"} and loaded.priority == 3
    assert loaded.budget is not None and loaded.budget.limit == 0.5
    assert list(loaded.subtasks) == ["a", "b"]
    assert loaded.subtasks["a"] == a
    assert loaded.subtasks["b"].state == "PENDING"

    loaded.state, loaded.answer, loaded.finished_at = "FAILED", None, 200.0
    loaded.error = ErrorRecord("UNAVAILABLE", "gone", "NO_WORKER", {"capability": "x"})
    reopened.finish_request(loaded)
    reopened.flush()
    assert list(reopened.unfinished()) == []
    final = reopened.load("r1")
    assert final is not None
    assert final.record.state == "FAILED" and final.record.error == loaded.error
    assert reopened.load("nope") is None
    reopened.close()
