"""Prometheus metrics, declared in one place with bounded label sets.

Labels are capabilities, worker ids, workflows, outcomes and status codes:
sets bounded by the deployment, never a request id or any text of a prompt.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

#: Latency buckets in seconds, from sub-millisecond dispatch to slow model calls.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class SchedulerMetrics:
    """The scheduler's metrics; also the dispatcher's observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "agentmesh_requests_total",
            "Requests finished, by workflow and outcome.",
            ["workflow", "outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "agentmesh_request_duration_seconds",
            "Time from accepting a request to its outcome.",
            ["workflow"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.subtask_seconds = Histogram(
            "agentmesh_subtask_attempt_duration_seconds",
            "Duration of one subtask attempt on a worker, as the scheduler saw it.",
            ["capability", "worker", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "agentmesh_subtask_retries_total",
            "Subtask attempts retried, by capability and the status code that caused it.",
            ["capability", "code"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "agentmesh_queue_depth",
            "Subtasks waiting for a worker, by capability.",
            ["capability"],
            registry=registry,
        )
        self.workers = Gauge(
            "agentmesh_workers",
            "Registered workers, by state.",
            ["state"],
            registry=registry,
        )
        self.evictions = Counter(
            "agentmesh_worker_evictions_total",
            "Workers removed because their heartbeats stopped or their stream ended.",
            registry=registry,
        )

    # DispatchObserver
    def attempt_finished(self, capability: str, worker_id: str, seconds: float, code: str) -> None:
        self.subtask_seconds.labels(capability, worker_id, code).observe(seconds)

    def retried(self, capability: str, code: str) -> None:
        self.retries.labels(capability, code).inc()

    def queue_changed(self, capability: str, depth: int) -> None:
        self.queue_depth.labels(capability).set(depth)

    def request_finished(self, workflow: str, outcome: str, seconds: float) -> None:
        name = workflow or "custom_plan"
        self.requests.labels(name, outcome.lower()).inc()
        self.request_seconds.labels(name).observe(seconds)


class WorkerMetrics:
    """A worker's own metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.subtasks = Counter(
            "agentmesh_worker_subtasks_total",
            "Subtasks run by this worker, by capability and status code.",
            ["capability", "code"],
            registry=registry,
        )
        self.subtask_seconds = Histogram(
            "agentmesh_worker_subtask_duration_seconds",
            "Time this worker spent on a subtask.",
            ["capability"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "agentmesh_worker_in_flight",
            "Subtasks running in this worker now.",
            registry=registry,
        )


def serve_metrics(listen: str, registry: CollectorRegistry) -> int:
    """Serve /metrics on host:port (port 0 picks one); returns the port."""
    host, _, port = listen.rpartition(":")
    server, _ = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return int(server.server_port)
