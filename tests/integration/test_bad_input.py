"""Bad input: its documented status, a message naming the problem, and the server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import struct_pb2

from agentmesh.v1 import plan_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.support.mesh import ROOT, Mesh, refused, running_mesh, struct

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("bad"), AGENTMESH_MAX_INPUT_BYTES="65536") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stub(mesh: Mesh) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    with grpc.insecure_channel(mesh.target) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


def fails(call, request, timeout: float = 30.0) -> tuple[grpc.StatusCode, str, list[str]]:
    """The status code, message and BadRequest field names of a call that must fail."""
    code, message, violations = refused(call, request, timeout)
    return code, message, list(violations)


def step(id: str, capability: str, *deps: str) -> plan_pb2.PlanStep:
    return plan_pb2.PlanStep(id=id, capability=capability, depends_on=deps)


CASES = {
    "empty input": (
        scheduler_pb2.SubmitRequest(workflow="support_ticket"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty",
        "input",
    ),
    "blank text": (
        scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct({"text": "   "})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty",
        "input",
    ),
    "input over the size limit": (
        scheduler_pb2.SubmitRequest(
            workflow="support_ticket", input=struct({"text": "x" * 100_000})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "over the limit of 65536 bytes",
        "input",
    ),
    "unknown workflow": (
        scheduler_pb2.SubmitRequest(workflow="make_coffee", input=struct(TICKET)),
        grpc.StatusCode.NOT_FOUND,
        "unknown workflow 'make_coffee'",
        None,
    ),
    "input lacking the workflow's field": (
        scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct({"body": "hello"})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lacks",
        "input.text",
    ),
    "plan with a cycle": (
        scheduler_pb2.SubmitRequest(
            plan=plan_pb2.Plan(steps=[step("a", "summarize", "b"), step("b", "summarize", "a")]),
            input=struct(TICKET),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "cycle",
        "plan.steps",
    ),
    "plan with an unknown capability": (
        scheduler_pb2.SubmitRequest(
            plan=plan_pb2.Plan(steps=[step("a", "teleport")]), input=struct(TICKET)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown capability 'teleport'",
        "plan.steps[0].capability",
    ),
    "plan with a bad reference": (
        scheduler_pb2.SubmitRequest(
            plan=plan_pb2.Plan(
                steps=[
                    plan_pb2.PlanStep(
                        id="a",
                        capability="summarize",
                        inputs={"text": plan_pb2.Binding(refs=["steps.ghost.summary"])},
                    )
                ]
            ),
            input=struct(TICKET),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ghost",
        "plan.steps[0].inputs[text].refs[0]",
    ),
    "empty plan": (
        scheduler_pb2.SubmitRequest(plan=plan_pb2.Plan(), input=struct(TICKET)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "at least one step",
        "plan.steps",
    ),
    "bad request id": (
        scheduler_pb2.SubmitRequest(
            request_id="no spaces/allowed", workflow="support_ticket", input=struct(TICKET)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request_id",
        "request_id",
    ),
    "required capability nobody offers": (
        scheduler_pb2.SubmitRequest(
            plan=plan_pb2.Plan(
                steps=[
                    plan_pb2.PlanStep(
                        id="t",
                        capability="translate",
                        inputs={
                            "text": plan_pb2.Binding(refs=["request.text"]),
                            "target_language": plan_pb2.Binding(
                                value=struct_pb2.Value(string_value="de")
                            ),
                        },
                    )
                ]
            ),
            input=struct(TICKET),
        ),
        grpc.StatusCode.UNAVAILABLE,
        "no healthy worker offers capability 'translate'",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_submit(stub: scheduler_pb2_grpc.SchedulerServiceStub, case: str) -> None:
    request, code, words, field = CASES[case]
    got_code, message, fields = fails(stub.Submit, request)
    assert got_code == code, message
    assert words in message
    if field is not None:
        assert field in fields, fields


def test_deadline_too_short_to_be_met(stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
    request = scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(TICKET))
    code, message, _ = fails(stub.Submit, request, timeout=0.03)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" in message.lower()


def test_other_rpcs_refuse_bad_input(stub: scheduler_pb2_grpc.SchedulerServiceStub) -> None:
    assert (
        fails(stub.GetRequest, scheduler_pb2.GetRequestRequest())[0]
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        fails(
            stub.Decompose, scheduler_pb2.DecomposeRequest(workflow="nope", input=struct(TICKET))
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )
    code, message, _ = fails(
        stub.Dispatch, scheduler_pb2.DispatchRequest(capability="teleport", input=struct(TICKET))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "teleport" in message
    code, message, fields = fails(
        stub.Dispatch,
        scheduler_pb2.DispatchRequest(capability="sentiment", input=struct({"txt": "hi"})),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message  # the worker's input schema says no
    assert "text" in message
    code, _, fields = fails(stub.Register, scheduler_pb2.RegisterRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"worker.worker_id", "worker.address", "worker.capabilities"} <= set(fields)


def test_heartbeat_from_a_stranger_is_told_to_register(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
) -> None:
    replies = list(
        stub.Heartbeat(iter([scheduler_pb2.HeartbeatRequest(worker_id="stranger")]), timeout=5)
    )
    assert replies[0].directive == scheduler_pb2.HEARTBEAT_DIRECTIVE_REGISTER


def test_a_failed_request_is_recorded_with_its_error(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    request, code, _, _ = CASES["required capability nobody offers"]
    failing = scheduler_pb2.SubmitRequest()
    failing.CopyFrom(request)
    failing.request_id = "fails-1"
    assert fails(stub.Submit, failing)[0] == code
    record = mesh.client.get_request("fails-1")
    assert record.state == scheduler_pb2.REQUEST_STATE_FAILED
    assert record.error.code == "UNAVAILABLE" and "translate" in record.error.message
    assert record.subtasks[0].state == scheduler_pb2.SUBTASK_STATE_FAILED


def test_server_still_serves(mesh: Mesh) -> None:
    request = mesh.client.submit("support_ticket", TICKET)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
