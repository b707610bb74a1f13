"""The check that refuses enum values outside their enum, at any depth, and only walks
message types that hold an enum."""

from agentmesh.server.handlers import _holds_enums, enum_violations
from agentmesh.v1 import plan_pb2, scheduler_pb2, worker_pb2
from agentmesh.wire import dict_to_struct


def test_an_unknown_value_deep_in_a_plan_is_named_by_its_path() -> None:
    request = scheduler_pb2.SubmitRequest(
        plan=plan_pb2.Plan(steps=[plan_pb2.PlanStep(id="a", capability="sentiment")]),
        input=dict_to_struct({"text": "hi"}),
    )
    request.plan.steps.add(id="b", capability="summarize", difficulty=42)
    [violation] = enum_violations(request)
    assert violation.field == "plan.steps[1].difficulty"
    assert "42 is not a Difficulty" in violation.description


def test_unknown_values_in_repeated_and_top_level_fields_are_all_named() -> None:
    request = scheduler_pb2.SubmitRequest(priority=7)
    batch = worker_pb2.ExecuteStreamRequest()
    batch.subtasks.add(id=1, request=worker_pb2.ExecuteRequest(difficulty=9))
    assert [v.field for v in enum_violations(request)] == ["priority"]
    assert [v.field for v in enum_violations(batch)] == ["subtasks[0].request.difficulty"]


def test_only_message_types_holding_enums_are_walked() -> None:
    assert _holds_enums(scheduler_pb2.SubmitRequest.DESCRIPTOR)
    assert _holds_enums(worker_pb2.ExecuteStreamRequest.DESCRIPTOR)
    assert not _holds_enums(plan_pb2.Binding.DESCRIPTOR)
    assert not _holds_enums(worker_pb2.ExecuteResponse.DESCRIPTOR)
