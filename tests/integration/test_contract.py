"""The contract holds at the edges: enum values, step inputs and their limits, final states."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from agentmesh.v1 import plan_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from tests.support.mesh import ROOT, Mesh, refused, running_mesh, struct

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("contract")) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stub(mesh: Mesh) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    with grpc.insecure_channel(mesh.target) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


def ticket_plan(**step_fields: int) -> plan_pb2.Plan:
    return plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id="mood",
                capability="sentiment",
                inputs={"text": plan_pb2.Binding(refs=["request.text"])},
                **step_fields,
            )
        ],
        answer={"mood": plan_pb2.Binding(refs=["steps.mood"])},
    )


@pytest.mark.parametrize("priority", [-1, 5, 99, 2**31 - 1, -(2**31 - 1)])
def test_submit_refuses_a_priority_outside_the_enum(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, priority: int
) -> None:
    request = scheduler_pb2.SubmitRequest(
        workflow="support_ticket", input=struct(TICKET), priority=priority
    )
    code, message, violations = refused(stub.Submit, request)
    assert code == Code.INVALID_ARGUMENT, message
    assert "priority" in violations and str(priority) in violations["priority"]
    code, _, violations = refused(
        stub.StreamSubmit,
        scheduler_pb2.StreamSubmitRequest(
            workflow="support_ticket", input=struct(TICKET), priority=priority
        ),
    )
    assert code == Code.INVALID_ARGUMENT and "priority" in violations


def test_plans_dispatch_and_registration_refuse_enum_values_outside_the_enum(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
) -> None:
    code, _, violations = refused(
        stub.Decompose,
        scheduler_pb2.DecomposeRequest(
            plan=ticket_plan(priority=99, difficulty=77), input=struct(TICKET)
        ),
    )
    assert code == Code.INVALID_ARGUMENT
    assert {"plan.steps[0].priority", "plan.steps[0].difficulty"} <= set(violations)
    code, _, violations = refused(
        stub.Dispatch,
        scheduler_pb2.DispatchRequest(capability="sentiment", input=struct(TICKET), difficulty=77),
    )
    assert code == Code.INVALID_ARGUMENT and "difficulty" in violations
    code, _, violations = refused(
        stub.Register,
        scheduler_pb2.RegisterRequest(
            worker=worker_pb2.WorkerInfo(
                worker_id="odd",
                address="127.0.0.1:1",
                capabilities=["sentiment"],
                capacity=1,
                tier=9,
            )
        ),
    )
    assert code == Code.INVALID_ARGUMENT and "worker.tier" in violations
    # In range, the same plan is accepted and shown as given.
    plan = stub.Decompose(
        scheduler_pb2.DecomposeRequest(
            plan=ticket_plan(priority=plan_pb2.PRIORITY_HIGH), input=struct(TICKET)
        ),
        timeout=10,
    ).plan
    assert plan.steps[0].priority == plan_pb2.PRIORITY_HIGH


def test_a_ticket_over_a_skills_input_budget_is_refused_before_any_worker_runs(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    from agentmesh.server.skills import SKILLS

    steps = ("extract_entities", "detect_language", "sentiment", "summarize")
    text = "My laptop arrived broken. " * (max(SKILLS[c].max_input_bytes for c in steps) // 26 + 1)
    request = scheduler_pb2.SubmitRequest(
        request_id="too-long-1", workflow="support_ticket", input=struct({"text": text})
    )
    code, message, violations = refused(stub.Submit, request)
    assert code == Code.INVALID_ARGUMENT, message
    assert "the input of step" in message and "long_document" in message
    assert any(f.startswith("steps.") and f.endswith(".input") for f in violations), violations
    # Refused at admission: nothing was accepted under that id.
    code, _, _ = refused(stub.GetRequest, scheduler_pb2.GetRequestRequest(request_id="too-long-1"))
    assert code == Code.NOT_FOUND
    # The same text goes through the long-document path.
    answer = mesh.client.submit("long_document", {"text": text}).answer
    assert answer["summary"]


def test_a_step_input_that_breaks_its_schema_fails_with_field_violations(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
) -> None:
    plan = plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id="lang",
                capability="detect_language",
                inputs={"text": plan_pb2.Binding(refs=["request.text"])},
            ),
            plan_pb2.PlanStep(
                id="mood",
                capability="sentiment",
                depends_on=["lang"],
                # A number where sentiment takes a text: only known once `lang` has run.
                inputs={"text": plan_pb2.Binding(refs=["steps.lang.confidence"])},
            ),
        ],
        answer={"mood": plan_pb2.Binding(refs=["steps.mood"])},
    )
    request = scheduler_pb2.SubmitRequest(request_id="bad-step-1", plan=plan, input=struct(TICKET))
    code, message, violations = refused(stub.Submit, request)
    assert code == Code.INVALID_ARGUMENT, message
    assert "steps.mood.input.text" in violations, violations
    code, _, violations = refused(
        stub.Dispatch,
        scheduler_pb2.DispatchRequest(capability="sentiment", input=struct({"txt": "hi"})),
    )
    assert code == Code.INVALID_ARGUMENT and "input" in violations


def requests_total(mesh: Mesh) -> dict[tuple[str, str, str], float]:
    """agentmesh_requests_total by (workflow, outcome, code)."""
    url = f"http://127.0.0.1:{mesh.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    counts = {}
    for labels, value in re.findall(r"^agentmesh_requests_total\{([^}]*)\} (\S+)$", body, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[(found["workflow"], found["outcome"], found["code"])] = float(value)
    return counts


def test_every_answered_request_is_counted_by_code(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    before = requests_total(mesh)
    calls = [
        (stub.Submit, scheduler_pb2.SubmitRequest(workflow="nope", input=struct(TICKET))),
        (stub.Submit, scheduler_pb2.SubmitRequest(workflow="support_ticket")),
        (
            stub.StreamSubmit,
            scheduler_pb2.StreamSubmitRequest(
                workflow="support_ticket", input=struct(TICKET), priority=99
            ),
        ),
    ]
    for call, request in calls:
        refused(call, request)
    mesh.client.submit("support_ticket", TICKET)
    after = requests_total(mesh)
    grew = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    assert grew == {
        ("unknown", "refused", "NOT_FOUND"): 1.0,
        ("support_ticket", "refused", "INVALID_ARGUMENT"): 1.0,
        ("unknown", "refused", "INVALID_ARGUMENT"): 1.0,
        ("support_ticket", "succeeded", "OK"): 1.0,
    }
