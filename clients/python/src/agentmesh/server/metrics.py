"""Prometheus metrics, declared in one place with bounded label sets.

Labels are workflows, capabilities, worker ids, models, tiers, outcomes and
status codes: sets bounded by the deployment, never a request id or any
text of a prompt. Latency histograms carry the trace id of an observation
as an OpenMetrics exemplar, so a slow bucket in Grafana leads to a trace.

The scheduler's view of the mesh (per-worker load and health, per-capability
queues) is read from the live registry at scrape time by `MeshCollector`, so
a worker that left leaves no stale series behind.

See docs/observability.md for the full list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agentmesh.server import telemetry
from agentmesh.tiers import Tier
from agentmesh.usage import Usage

#: Latency buckets in seconds, from sub-millisecond dispatch to slow model calls.
LATENCY_BUCKETS = (
    0.0005,
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

#: Why a worker leaves the mesh without saying goodbye.
EVICTION_REASONS = ("heartbeat_timeout", "stream_closed")

#: Names of agentmesh.v1.Tier values, as the `tier` label.
TIER_LABELS = {tier.value: tier.label for tier in Tier}


def exemplar() -> dict[str, str] | None:
    """The current trace id as an exemplar, when a sampled span is active."""
    if not telemetry.recording():
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}


M = TypeVar("M", Counter, Gauge, Histogram)


def bound(metric: M) -> Callable[..., M]:
    """`metric.labels`, keeping each child it makes: the hot paths ask for the same few
    label values many times a second, and prometheus_client builds and locks each time."""
    children: dict[tuple[str, ...], M] = {}

    def labels(*values: str) -> M:
        child = children.get(values)
        if child is None:
            child = children[values] = metric.labels(*values)
        return child

    return labels


class SchedulerMetrics:
    """The scheduler's metrics; also the dispatcher's observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "agentmesh_requests",
            "Requests answered, by workflow, outcome (succeeded, failed, cancelled, or refused "
            "before it was accepted) and status code.",
            ["workflow", "outcome", "code"],
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
            "One subtask attempt on a worker as the scheduler saw it, by status code.",
            ["capability", "worker", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.subtasks = Counter(
            "agentmesh_subtasks",
            "Subtasks finished, by capability, the tier that served them, and outcome.",
            ["capability", "tier", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "agentmesh_subtask_retries",
            "Subtask attempts retried, by capability and the status code that caused it.",
            ["capability", "code"],
            registry=registry,
        )
        self.retries_refused = Counter(
            "agentmesh_subtask_retries_refused",
            "Retries not made because the retry budget was spent, by capability.",
            ["capability"],
            registry=registry,
        )
        self.hedges = Counter(
            "agentmesh_subtask_hedges",
            "Second copies of slow attempts sent to another worker, by capability.",
            ["capability"],
            registry=registry,
        )
        self.offloaded_steps = Counter(
            "agentmesh_offloaded_steps",
            "Steps that ran in a plan fragment on a worker, without a dispatch of their own.",
            ["capability"],
            registry=registry,
        )
        self.shed_subtasks = Counter(
            "agentmesh_subtasks_shed",
            "Subtasks failed after waiting in their queue because their request could no "
            "longer finish by its deadline (AGENTMESH_SHED_LATE).",
            ["capability"],
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "agentmesh_queue_wait_seconds",
            "Time a subtask waited in its queue for a worker slot.",
            ["capability"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dispatch_overhead_seconds = Histogram(
            "agentmesh_dispatch_overhead_seconds",
            "Scheduler and network time of one attempt: its round trip less the worker's own time.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.evictions = Counter(
            "agentmesh_worker_evictions",
            "Workers removed, by reason (heartbeat_timeout, stream_closed).",
            ["reason"],
            registry=registry,
        )
        for reason in EVICTION_REASONS:
            # Exported from the start, so that increase() sees the first eviction.
            self.evictions.labels(reason)
        self.ejections = Counter(
            "agentmesh_worker_ejections",
            "Workers taken out of rotation for a cool-down after repeated failures, by worker.",
            ["worker"],
            registry=registry,
        )
        self.heartbeat_interval = Gauge(
            "agentmesh_heartbeat_interval_seconds",
            "How often workers are asked to report their health.",
            registry=registry,
        )
        self.store_up = Gauge(
            "agentmesh_store_up",
            "1 while the request store commits writes; 0 while it cannot and new requests "
            "are refused with UNAVAILABLE.",
            registry=registry,
        )
        self.auth_denied = auth_denied_counter(registry)
        # Exported at 0 from the start (each label of the first), so increase() sees the first.
        self.taken_over = Counter(
            "agentmesh_requests_taken_over",
            "Running requests this replica took over from another, found by its periodic "
            "look: lease=expired, the other died or stalled past its lease; lease=released, "
            "it was stopped cleanly with the request still running.",
            ["lease"],
            registry=registry,
        )
        for lease in ("expired", "released"):
            self.taken_over.labels(lease)
        self.fenced = Counter(
            "agentmesh_requests_fenced",
            "Requests this replica stopped running because a write of theirs was refused: "
            "another replica had taken them over and finishes them.",
            registry=registry,
        )
        self.store_write_errors = Counter(
            "agentmesh_store_write_errors",
            "Commits of the request store that failed (each retry counts).",
            registry=registry,
        )
        self.tokens = Counter(
            "agentmesh_tokens",
            "Model tokens spent by subtasks, by model and direction (input, output).",
            ["model", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "agentmesh_cost_usd",
            "Model cost of subtasks in US dollars, by model.",
            ["model"],
            registry=registry,
        )

        self._subtask_seconds = bound(self.subtask_seconds)
        self._subtasks = bound(self.subtasks)
        self._queue_wait_seconds = bound(self.queue_wait_seconds)
        self._tokens = bound(self.tokens)
        self._cost = bound(self.cost)

    # -- DispatchObserver ----------------------------------------------------------

    def attempt_finished(self, capability: str, worker_id: str, seconds: float, code: str) -> None:
        self._subtask_seconds(capability, worker_id, code).observe(seconds, exemplar=exemplar())

    def retried(self, capability: str, code: str) -> None:
        self.retries.labels(capability, code).inc()

    def retry_refused(self, capability: str) -> None:
        self.retries_refused.labels(capability).inc()

    def hedged(self, capability: str) -> None:
        self.hedges.labels(capability).inc()

    def offloaded(self, capability: str) -> None:
        self.offloaded_steps.labels(capability).inc()

    def shed(self, capability: str) -> None:
        self.shed_subtasks.labels(capability).inc()

    def worker_ejected(self, worker_id: str) -> None:
        self.ejections.labels(worker_id).inc()

    def queue_waited(self, capability: str, seconds: float) -> None:
        self._queue_wait_seconds(capability).observe(seconds)

    def overhead(self, seconds: float) -> None:
        self.dispatch_overhead_seconds.observe(max(seconds, 0.0))

    def subtask_finished(
        self, capability: str, tier: int | None, outcome: str, usage: Usage, model: str
    ) -> None:
        tier_label = "none" if tier is None else TIER_LABELS.get(tier, "small")
        self._subtasks(capability, tier_label, outcome.lower()).inc()
        if outcome == "SUCCEEDED":
            name = model or tier_label
            self._tokens(name, "input").inc(usage.input_tokens)
            self._tokens(name, "output").inc(usage.output_tokens)
            self._cost(name).inc(usage.cost_usd)

    def worker_evicted(self, reason: str) -> None:
        self.evictions.labels(reason).inc()

    def request_finished(self, workflow: str, outcome: str, code: str, seconds: float) -> None:
        name = workflow or "custom_plan"
        self.requests.labels(name, outcome.lower(), code).inc()
        self.request_seconds.labels(name).observe(seconds, exemplar=exemplar())

    def request_refused(self, workflow: str, code: str) -> None:
        self.requests.labels(workflow or "custom_plan", "refused", code).inc()

    def requests_taken_over(self, expired: int, released: int) -> None:
        self.taken_over.labels("expired").inc(expired)
        self.taken_over.labels("released").inc(released)

    def request_fenced(self) -> None:
        self.fenced.inc()


class MeshCollector(Collector):
    """The scheduler's live view of workers and queues, read at scrape time."""

    def __init__(self, snapshot: Callable[[], MeshSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        families = {
            "in_flight": GaugeMetricFamily(
                "agentmesh_mesh_worker_in_flight",
                "Subtasks the scheduler has in flight on each worker.",
                labels=["worker"],
            ),
            "capacity": GaugeMetricFamily(
                "agentmesh_mesh_worker_capacity",
                "Subtasks each worker runs at once.",
                labels=["worker"],
            ),
            "latency": GaugeMetricFamily(
                "agentmesh_mesh_worker_latency_seconds",
                "The scheduler's peak-EWMA latency estimate of each worker.",
                labels=["worker"],
            ),
            "error_ratio": GaugeMetricFamily(
                "agentmesh_mesh_worker_error_ratio",
                "Share of recent attempts on each worker that failed.",
                labels=["worker"],
            ),
            "queue_length": GaugeMetricFamily(
                "agentmesh_mesh_worker_reported_queue_length",
                "Subtasks waiting inside each worker, as it last reported.",
                labels=["worker"],
            ),
            "heartbeat_age": GaugeMetricFamily(
                "agentmesh_mesh_worker_heartbeat_age_seconds",
                "Seconds since each worker's last heartbeat.",
                labels=["worker"],
            ),
        }
        for worker in snap.workers:
            for key, family in families.items():
                family.add_metric([worker.worker_id], getattr(worker, key))
        yield from families.values()
        states = GaugeMetricFamily(
            "agentmesh_workers", "Registered workers, by state.", labels=["state"]
        )
        draining = sum(1 for w in snap.workers if w.draining)
        ejected = sum(1 for w in snap.workers if w.ejected and not w.draining)
        states.add_metric(["active"], len(snap.workers) - draining - ejected)
        states.add_metric(["draining"], draining)
        states.add_metric(["ejected"], ejected)
        yield states
        depth = GaugeMetricFamily(
            "agentmesh_queue_depth",
            "Subtasks waiting for a worker, by capability.",
            labels=["capability"],
        )
        age = GaugeMetricFamily(
            "agentmesh_queue_oldest_age_seconds",
            "How long the longest-waiting subtask of each capability has waited.",
            labels=["capability"],
        )
        slack = GaugeMetricFamily(
            "agentmesh_queue_least_slack_seconds",
            "The least slack of a subtask waiting in each capability's queue: the time left to "
            "its request's deadline less the expected remaining critical path after it "
            "(negative: expected late). No sample for an empty queue.",
            labels=["capability"],
        )
        for capability, (queue_depth, oldest) in sorted(snap.queues.items()):
            depth.add_metric([capability], queue_depth)
            age.add_metric([capability], oldest)
        for capability, least in sorted(snap.least_slack.items()):
            slack.add_metric([capability], least)
        yield depth
        yield age
        yield slack
        active = GaugeMetricFamily("agentmesh_requests_active", "Requests running now.")
        active.add_metric([], snap.active_requests)
        yield active
        lag = GaugeMetricFamily(
            "agentmesh_scheduler_loop_lag_seconds",
            "How late the scheduler's event loop runs a timer, smoothed: its load.",
        )
        lag.add_metric([], snap.loop_lag)
        yield lag
        busy = GaugeMetricFamily(
            "agentmesh_scheduler_loop_busy_ratio",
            "Share of the time the scheduler's event loop is on the CPU, smoothed: its load.",
        )
        busy.add_metric([], snap.loop_busy)
        yield busy
        offloading = GaugeMetricFamily(
            "agentmesh_offload_active",
            "1 while the scheduler hands workers plan fragments (AGENTMESH_OFFLOAD).",
        )
        offloading.add_metric([], 1 if snap.offloading else 0)
        yield offloading


@dataclass(frozen=True, slots=True)
class WorkerView:
    """One worker's numbers for MeshCollector."""

    worker_id: str
    in_flight: int
    capacity: int
    latency: float
    error_ratio: float
    queue_length: int
    heartbeat_age: float
    draining: bool
    ejected: bool = False


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    workers: list[WorkerView]
    #: Depth and oldest age of each capability's queue.
    queues: dict[str, tuple[int, float]]
    active_requests: int
    #: The share of the time the scheduler's event loop is busy, and its lag (seconds),
    #: smoothed.
    loop_busy: float = 0.0
    loop_lag: float = 0.0
    #: Whether steps are being offloaded to workers in fragments now.
    offloading: bool = False
    #: The least slack of each capability's queue, for the queues not empty.
    least_slack: dict[str, float] = field(default_factory=dict)


class WorkerMetrics:
    """A worker's own metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.subtasks = Counter(
            "agentmesh_worker_subtasks",
            "Subtasks run by this worker, by capability and status code.",
            ["capability", "code"],
            registry=registry,
        )
        self.subtask_seconds = Histogram(
            "agentmesh_worker_subtask_duration_seconds",
            "Time this worker spent running a subtask, from getting a free slot to its output.",
            ["capability"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "agentmesh_worker_in_flight",
            "Subtasks running in this worker now.",
            registry=registry,
        )
        self.queue_length = Gauge(
            "agentmesh_worker_queue_length",
            "Subtasks waiting for a free slot in this worker.",
            registry=registry,
        )
        self.info = Gauge(
            "agentmesh_worker_info",
            "Always 1: the worker's id, backend, model and tier, to join its metrics with the "
            "scheduler's `worker` label.",
            ["worker", "backend", "model", "tier"],
            registry=registry,
        )
        self.auth_denied = auth_denied_counter(registry)
        self.replays = Counter(
            "agentmesh_worker_replays",
            "Repeated subtasks answered from the worker's store without running again.",
            registry=registry,
        )
        #: `subtasks.labels` and `subtask_seconds.labels`, keeping their children.
        self.subtasks_of = bound(self.subtasks)
        self.subtask_seconds_of = bound(self.subtask_seconds)


def auth_denied_counter(registry: CollectorRegistry) -> Counter:
    """Calls refused for their credentials, by reason (never with the credential itself)."""
    return Counter(
        "agentmesh_auth_denied",
        "Calls refused for missing, invalid or insufficient credentials, by reason.",
        ["reason"],
        registry=registry,
    )


def serve_metrics(listen: str, registry: CollectorRegistry) -> int:
    """Serve /metrics on host:port (port 0 picks one); returns the port. OSError, naming
    the address, when it cannot be bound."""
    host, _, port = listen.rpartition(":")
    try:
        server, _ = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except OSError as error:
        raise OSError(f"cannot serve metrics on {listen}: {error.strerror or error}") from error
    return int(server.server_port)
