"""One trace per request across processes, exported over OTLP/gRPC to a real receiver."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from agentmesh.errors import Unavailable
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        self._lock = threading.Lock()

    def Export(self, request, context):
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def snapshot(self) -> list[tuple[str, trace_pb2.Span]]:
        with self._lock:
            return list(self.spans)


def attributes(span: trace_pb2.Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    servicer = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


@pytest.mark.parametrize("method", ["ExecuteStream", "Execute"])
def test_one_trace_per_request_across_processes_with_a_retry(
    tmp_path, receiver: tuple[Receiver, int], method: str
) -> None:
    """`method`: how the scheduler calls the workers (ExecuteStream unless they say not)."""
    spans, port = receiver
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "AGENTMESH_EXECUTE_STREAM": "1" if method == "ExecuteStream" else "0",
    }
    worker_span = f"agentmesh.v1.WorkerService/{method}"
    mesh = Mesh(tmp_path, **otel)
    try:
        mesh.start_scheduler()
        mesh.start_worker("good", **otel)
        # A worker whose model is always down: subtasks sent to it are retried elsewhere.
        mesh.start_worker(
            "flaky",
            backend="sim",
            AGENTMESH_SIM_LATENCY="0.001",
            AGENTMESH_SIM_ERROR_RATE="1",
            **otel,
        )
        mesh.wait_workers({"good", "flaky"})
        request = None
        for i, ticket in enumerate(TICKETS):
            candidate = mesh.client.submit(
                "support_ticket",
                json.loads(ticket.read_text()),
                request_id=f"traced-{i}",
                view=scheduler_pb2.REQUEST_VIEW_FULL,
            )
            assert candidate.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
            if any(s.attempts > 1 for s in candidate.subtasks):
                request = candidate
                break
        assert request is not None, "no subtask was ever retried"
        rid = request.request_id
        attempts = sum(s.attempts for s in request.subtasks if s.attempts)

        def trace_complete() -> list[tuple[str, trace_pb2.Span]]:
            mine = [
                (svc, s)
                for svc, s in spans.snapshot()
                if attributes(s).get("agentmesh.request_id") == rid
            ]
            attempt_spans = [s for _, s in mine if s.name.startswith("subtask ")]
            executes = [s for _, s in mine if s.name == worker_span]
            return mine if len(attempt_spans) == attempts and len(executes) == attempts else []

        mine = wait_for(trace_complete, 30, f"the spans of {rid}")
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{mesh.metrics_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        exposition = urllib.request.urlopen(scrape, timeout=5).read().decode()
    finally:
        mesh.stop()

    everything = spans.snapshot()
    (trace_id,) = {s.trace_id for _, s in mine}
    # Latency histograms carry trace ids as OpenMetrics exemplars.
    exemplars = set(re.findall(r'# \{trace_id="([0-9a-f]{32})"\}', exposition))
    traced = {s.trace_id.hex() for _, s in spans.snapshot()}
    assert exemplars and exemplars <= traced
    in_trace = [(svc, s) for svc, s in everything if s.trace_id == trace_id]
    by_id = {s.span_id: s for _, s in in_trace}

    roots = [s for _, s in in_trace if not s.parent_span_id]
    assert [r.name for r in roots] == ["agentmesh.v1.SchedulerService/Submit"]
    root = roots[0]
    assert attributes(root)["agentmesh.request_id"] == rid
    assert root.kind == trace_pb2.Span.SPAN_KIND_SERVER

    (decompose,) = [s for _, s in in_trace if s.name == "decompose"]
    assert decompose.parent_span_id == root.span_id

    attempt_spans = [s for _, s in in_trace if s.name.startswith("subtask ")]
    for span in attempt_spans:
        attrs = attributes(span)
        assert span.parent_span_id == root.span_id
        assert span.kind == trace_pb2.Span.SPAN_KIND_CLIENT
        assert attrs["agentmesh.request_id"] == rid
        # The attempt went by `method`, and its trace context with it (on the stream, in
        # the subtask's trace_context): the workers' spans below are its children.
        assert attrs["rpc.method"] == method
        assert {
            "agentmesh.subtask_id",
            "agentmesh.capability",
            "agentmesh.worker_id",
            "agentmesh.attempt",
        } <= set(attrs)
    retried = next(s for s in request.subtasks if s.attempts > 1)
    tries = sorted(
        (attributes(s)["agentmesh.attempt"], attributes(s)["agentmesh.worker_id"])
        for s in attempt_spans
        if attributes(s)["agentmesh.subtask_id"] == retried.id
    )
    assert [n for n, _ in tries] == list(range(1, retried.attempts + 1))
    assert tries[0][1] == "flaky" and tries[-1][1] == "good"

    # The workers' spans join the same trace, under the scheduler's attempt spans.
    executes = [(svc, s) for svc, s in in_trace if s.name == worker_span]
    assert {svc for svc, _ in executes} == {"agentmesh-worker"}
    for _, span in executes:
        parent = by_id[span.parent_span_id]
        assert parent.name.startswith("subtask ")
        assert (
            attributes(span)["agentmesh.subtask_id"] == attributes(parent)["agentmesh.subtask_id"]
        )
    backend_spans = [
        s for _, s in in_trace if by_id.get(s.parent_span_id) in [e for _, e in executes]
    ]
    assert backend_spans, "no backend span under the workers' Execute spans"
    assert any(svc == "agentmesh-scheduler" for svc, _ in in_trace)


def test_logs_are_json_lines_with_request_and_trace_ids(tmp_path, receiver) -> None:
    _, port = receiver
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    mesh = Mesh(tmp_path, **otel)
    try:
        mesh.start_scheduler()
        mesh.start_worker(
            "flaky",
            backend="sim",
            AGENTMESH_SIM_LATENCY="0.001",
            AGENTMESH_SIM_ERROR_RATE="1",
            **otel,
        )
        mesh.wait_workers({"flaky"})
        with pytest.raises(Unavailable):  # the only worker always fails
            mesh.client.submit(
                "support_ticket", json.loads(TICKETS[0].read_text()), request_id="logged-1"
            )
    finally:
        mesh.stop()
    lines = [
        json.loads(line) for line in mesh.log("scheduler").splitlines() if line.startswith("{")
    ]
    failed = [line for line in lines if line["message"] == "subtask attempt failed"]
    assert failed
    for line in failed:
        assert line["request_id"] == "logged-1"
        assert line["subtask_id"]
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    finished = [line for line in lines if line["message"] == "request finished"]
    assert finished[-1]["request_id"] == "logged-1" and finished[-1]["state"] == "FAILED"
