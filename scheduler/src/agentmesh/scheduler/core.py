"""The scheduler's core: admission, requests, membership. No gRPC here.

`SchedulerCore` ties the registry, the dispatcher, the executor, the
workflow library and the request store together; the servicer translates
protobuf to the calls below and errors to status codes.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from agentmesh.errors import (
    AgentmeshError,
    FieldViolation,
    InvalidArgument,
)
from agentmesh.scheduler import admission, contracts, requests
from agentmesh.scheduler.admission import Admission
from agentmesh.scheduler.backlog import local_backlog
from agentmesh.scheduler.calls import (
    DispatchObserver,
    EventSink,
    Outcome,
    SubtaskCall,
    WorkerTransport,
    ignore_events,
)
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.executor import Executor
from agentmesh.scheduler.fragments import LoopLoad, Offload
from agentmesh.scheduler.known import KnownRequests
from agentmesh.scheduler.lifecycle import RequestRunner
from agentmesh.scheduler.membership import Membership
from agentmesh.scheduler.planning import PlanMaker
from agentmesh.scheduler.planning import Source as Source  # where callers found it before
from agentmesh.scheduler.plans import Plan
from agentmesh.scheduler.policies import make_policy
from agentmesh.scheduler.records import RequestRecord, new_record, request_key
from agentmesh.scheduler.registry import HealthReport, Registry, WorkerRecord, WorkerSpec
from agentmesh.scheduler.replicas import Replicas, shared
from agentmesh.scheduler.requests import RequestIndex
from agentmesh.scheduler.stats import RequestWindow
from agentmesh.scheduler.store import Store
from agentmesh.scheduler.workflows import WorkflowLibrary
from agentmesh.server import telemetry
from agentmesh.server.clock import Clock
from agentmesh.server.metrics import MeshSnapshot, WorkerView
from agentmesh.server.skills import Skill
from agentmesh.tiers import Difficulty

log = logging.getLogger(__name__)


class SchedulerCore:
    """Everything the scheduler does, as plain async Python."""

    def __init__(
        self,
        config: SchedulerConfig,
        transport: WorkerTransport,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        observer: DispatchObserver | None = None,
        workflows: WorkflowLibrary | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        #: Where requests are persisted; None keeps them in memory only.
        self.store = store
        rng = rng or random.Random()
        self.registry = Registry(
            initial_latency=0.05,
            latency_decay=10.0,
            error_decay=30.0,
        )
        self.dispatcher = Dispatcher(
            self.registry,
            transport,
            make_policy(config.policy, rng),
            retry=config.retry,
            clock=clock,
            rng=rng,
            queue_bound=config.queue_bound,
            aging=config.aging,
            attempt_timeout=config.attempt_timeout,
            observer=observer,
            hedge=config.hedge,
            worker_wait=config.worker_wait,
            shed_late=config.shed_late,
            queue_order=config.queue_order,
            offload=Offload(
                config.offload,
                LoopLoad(config.offload_busy, config.offload_lag),
                config.offload_max_steps,
            ),
        )
        self.executor = Executor(self.dispatcher, store)
        self.workflows = workflows or WorkflowLibrary.load(config.workflows_dir)
        self.requests = RequestIndex(config.retained_requests)
        self.admission = Admission(config, clock)
        self.stats = RequestWindow()
        self.runner = RequestRunner(self.executor, store, self.requests, self.stats, clock)
        self.known = KnownRequests(
            config, clock, self.requests, self.runner, store, self.admission, self.dispatcher.slots
        )
        #: With a store several schedulers share (PostgreSQL): leases and takeovers.
        self.replicas: Replicas | None = None
        if (common := shared(store)) is not None:
            self.replicas = self.runner.replicas = Replicas(
                common,
                self.runner,
                clock,
                lease=config.lease,
                backlog=lambda: local_backlog(self.registry, self.dispatcher.slots),
                observer=self.dispatcher.observer,
            )
            self.dispatcher.before_send = self._committed_by
        self.plans = PlanMaker(self.workflows, self.registry, self.dispatcher, config.max_steps)
        self.membership = Membership(
            self.registry,
            self.dispatcher,
            clock,
            heartbeat_interval=config.heartbeat_interval,
            liveness_timeout=config.liveness_timeout,
        )

    async def _committed_by(self, deadline: float) -> bool:
        """Wait for what is queued for the store, until `deadline` (on the clock)."""
        assert self.store is not None
        return await self.store.committed(deadline - self.clock.now())

    @property
    def stopping(self) -> bool:
        """Set while the scheduler shuts down: cancelled requests stay unfinished in the store."""
        return self.runner.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.runner.stopping = value

    def recover(self, delay: float = 0.0) -> int:
        """Register the store's unfinished requests, to resume after `delay`; how many."""
        return self.runner.recover(delay)

    # -- requests ---------------------------------------------------------------

    async def submit(
        self,
        request_id: str,
        source: Source,
        data: dict[str, Any],
        *,
        priority: int = 0,
        cost_budget: float = 0.0,
        input_size: int | None = None,
        timeout: float | None = None,
        on_plan: Callable[[RequestRecord], None] | None = None,
        on_event: EventSink = ignore_events,
        tenant: str = "",
    ) -> RequestRecord:
        """Run a request to its outcome, or attach to it when its id is known.

        Returns the record, finished and committed to the store; a failed
        request is a record in state FAILED, not an exception. A known id
        with other parameters is refused (ALREADY_EXISTS); a known request
        that failed with a retryable code runs again. Raises for what is
        refused before the request is accepted. `on_plan` is called once the
        request is committed, and its subtasks wait for it; without `on_plan`
        they start at once (the outcome still waits for the store). The request is
        `tenant`'s, its id one of that tenant's own (another tenant's of the same id is
        another request).
        """
        started = False
        try:
            span = trace.get_current_span()
            # Only a client's own id can come again: a fresh one needs no fingerprint to
            # tell a retry from a reuse (and computing one is a visible part of a request).
            fingerprint = ""
            if request_id:
                fingerprint = requests.fingerprint(source.canonical(), data, priority, cost_budget)
                admission.check_request_id(request_id)
                span.set_attribute(telemetry.REQUEST_ID, request_id)
                known = await self.known.repeat(
                    tenant, request_id, fingerprint, timeout, on_plan, on_event
                )
                if known is not None:
                    return known
            else:
                request_id = uuid.uuid4().hex
                span.set_attribute(telemetry.REQUEST_ID, request_id)
            self.runner.check_store()
            deadline = self.admission.deadline_from(timeout)
            self.admission.check_input(
                data, input_size if input_size is not None else admission.json_size(data)
            )
            if not math.isfinite(cost_budget) or cost_budget < 0:
                raise InvalidArgument(
                    f"cost_budget_usd is {cost_budget}",
                    [FieldViolation("cost_budget_usd", "a finite amount: 0 (no limit) or more")],
                )
            with telemetry.span(
                "decompose",
                attributes={telemetry.REQUEST_ID: request_id, telemetry.WORKFLOW: source.workflow},
            ) as decompose:
                plan = await self.make_plan(source, data, deadline)
                decompose.set_attribute("agentmesh.steps", len(plan.steps))
            if self.requests.get(request_key(tenant, request_id)) is not None:
                # The same id arrived while this one was planned: one of them runs.
                known = await self.known.repeat(
                    tenant, request_id, fingerprint, timeout, on_plan, on_event
                )
                if known is not None:
                    return known
            contracts.check_plan_inputs(plan, data, self.contract)
            self.admission.admit(plan, self.requests.active(), self.dispatcher.slots.has_room)
            record = new_record(request_id, plan, data, priority, time.time(), cost_budget, tenant)
            started = True
            return await self.runner.start(record, deadline, fingerprint, on_plan, on_event)
        except AgentmeshError as error:
            if not started:  # an accepted request is counted when it finishes
                self.refused(source, error)
            raise

    def refused(self, source: Source | None, error: AgentmeshError) -> None:
        """Count a request answered with an error before it was accepted.

        Its workflow label is a known workflow's name, or "unknown" (also for
        a request that could not be read), or "custom_plan", so that clients
        cannot grow the label set.
        """
        label = "custom_plan"
        if source is None:
            label = "unknown"
        elif source.workflow:
            label = source.workflow if source.workflow in self.workflows.names() else "unknown"
        self.dispatcher.observer.request_refused(label, error.code_name)

    async def get(self, request_id: str, tenant: str = "") -> RequestRecord:
        """`tenant`'s request of this id; NOT_FOUND for an id that tenant never used."""
        return await self.known.get(tenant, request_id)

    async def read(
        self, request_id: str, timeout: float | None = None, tenant: str = ""
    ) -> RequestRecord:
        """`get` for a caller outside (GetRequest): shown once committed (`KnownRequests.read`)."""
        return await self.known.read(tenant, request_id, timeout)

    async def dispatch(
        self,
        request_id: str,
        capability: str,
        data: dict[str, Any],
        *,
        priority: int = 0,
        difficulty: Difficulty = Difficulty.UNSPECIFIED,
        timeout: float | None = None,
        tenant: str = "",
    ) -> Outcome:
        """One subtask, routed and retried like a plan step; its id is one of `tenant`'s."""
        if request_id:
            admission.check_request_id(request_id)
            self.requests.claim_dispatch(
                tenant,
                request_id,
                requests.fingerprint(
                    {"capability": capability, "difficulty": difficulty}, data, priority, 0.0
                ),
            )
        deadline = self.admission.deadline_from(timeout)
        self.admission.check_input(data, admission.json_size(data))
        if capability not in self.capabilities():
            raise InvalidArgument(
                f"unknown capability {capability!r}",
                [FieldViolation("capability", f"known: {', '.join(sorted(self.capabilities()))}")],
                reason="UNKNOWN_CAPABILITY",
            )
        contracts.check_input(self.contract(capability), data, "input", "the input")
        call = SubtaskCall(
            request_id=request_id or uuid.uuid4().hex,
            subtask_id="dispatch",
            capability=capability,
            input=data,
            priority=priority,
            difficulty=difficulty,
            deadline=deadline,
            tenant=tenant,
        )
        return await self.dispatcher.run(call)

    def snapshot(self) -> MeshSnapshot:
        """Workers, queues and active requests now, for the metrics collector."""
        now = self.clock.now()
        ages = self.dispatcher.slots.oldest_ages()
        return MeshSnapshot(
            workers=[
                WorkerView(
                    worker_id=w.worker_id,
                    in_flight=w.in_flight,
                    capacity=w.spec.capacity,
                    latency=w.latency_estimate(now),
                    error_ratio=w.errors.rate(now),
                    queue_length=w.health.queue_length,
                    heartbeat_age=now - w.last_heartbeat,
                    draining=w.draining,
                    ejected=w.ejected_until > now,
                )
                for w in self.registry.workers()
            ],
            queues={c: (d, ages[c]) for c, d in self.dispatcher.slots.queue_depths().items()},
            least_slack=self.dispatcher.slots.least_slacks(),
            active_requests=self.requests.active(),
            loop_busy=self.dispatcher.offload.load.busy,
            loop_lag=self.dispatcher.offload.load.lag,
            offloading=self.dispatcher.offload.active,
        )

    # -- planning and membership: see `planning` and `membership` ---------------------

    def capabilities(self) -> frozenset[str]:
        """Capabilities a plan may name: the skill catalogue and whatever workers offer."""
        return self.plans.capabilities()

    def contract(self, capability: str) -> Skill | None:
        """The contract a capability's inputs are checked against: the one its live workers
        registered, else the catalogue's for a built-in skill; None for neither."""
        return contracts.contract_of(self.registry, capability)

    async def make_plan(self, source: Source, data: Mapping[str, Any], deadline: float) -> Plan:
        """The checked plan for a request: its workflow's, the one it supplied, or a planner's."""
        return await self.plans.make(source, data, deadline)

    def register(self, spec: WorkerSpec) -> WorkerRecord:
        """Register a worker (again); InvalidArgument for a registration that cannot work."""
        return self.membership.register(spec)

    def heartbeat(self, worker_id: str, report: HealthReport) -> WorkerRecord:
        """A worker's health report; NotFound when the worker must register again."""
        return self.membership.heartbeat(worker_id, report)

    async def evict(self, worker_id: str, reason: str) -> WorkerRecord | None:
        """Remove a worker (reason: heartbeat_timeout or stream_closed), re-queueing its work."""
        return await self.membership.evict(worker_id, reason)

    async def evict_silent(self, stalled: float = 0.0) -> list[str]:
        """Evict every worker silent past the liveness timeout (see `Membership.evict_silent`)."""
        return await self.membership.evict_silent(stalled)
