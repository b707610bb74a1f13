"""SchedulerService: protobuf in, core calls, protobuf out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from grpc import aio
from opentelemetry import trace

from agentmesh import wire
from agentmesh.errors import (
    AgentmeshError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from agentmesh.scheduler import convert
from agentmesh.scheduler.addresses import foreign_address
from agentmesh.scheduler.beats import BeatLimiter, Verdict
from agentmesh.scheduler.calls import SubtaskEvent
from agentmesh.scheduler.core import SchedulerCore, Source
from agentmesh.scheduler.membership import check_registration
from agentmesh.scheduler.plans import too_many_steps
from agentmesh.scheduler.records import RequestRecord
from agentmesh.server import telemetry
from agentmesh.server.callers import ADMINS, CALLERS, CallerGate
from agentmesh.server.handlers import Undecodable, streaming, unary
from agentmesh.server.tls import check_worker
from agentmesh.server.tokens import Caller
from agentmesh.tls import TlsConfig
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]
_DONE = object()
SUBMIT = "agentmesh.v1.SchedulerService/Submit"
STREAM_SUBMIT = "agentmesh.v1.SchedulerService/StreamSubmit"
DISPATCH = "agentmesh.v1.SchedulerService/Dispatch"
DEFAULT_RECENT, MAX_RECENT = 20, 200
#: The roles that may call each caller RPC (Register and Heartbeat are the workers').
ROLES = {
    "Submit": CALLERS,
    "StreamSubmit": CALLERS,
    "GetRequest": CALLERS,
    "Decompose": CALLERS,
    "Dispatch": CALLERS,
    "ListWorkers": ADMINS,
    "GetStats": ADMINS,
}


def _source(
    request: scheduler_pb2.SubmitRequest
    | scheduler_pb2.StreamSubmitRequest
    | scheduler_pb2.DecomposeRequest,
    max_steps: int,
) -> Source:
    which = request.WhichOneof("source")
    if which == "plan":
        if len(request.plan.steps) > max_steps:
            raise too_many_steps(len(request.plan.steps), max_steps)
        return Source(plan=convert.plan_from_proto(request.plan))
    if which == "goal":
        return Source(goal=request.goal)
    return Source(workflow=request.workflow)


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    """The caller RPCs admit a call by its token first (`gate`): a `client` may submit,
    plan, dispatch and read its own tenant's requests; an `admin` may call anything.
    Register and Heartbeat are the workers': with `tls` on, each speaks only for the worker
    the peer's certificate names."""

    def __init__(
        self,
        core: SchedulerCore,
        gate: CallerGate | None = None,
        tls: TlsConfig | None = None,
        denied: Callable[[str], None] = lambda reason: None,
        check_addresses: bool = False,
    ) -> None:
        """With `check_addresses`, a worker registers only an address of its own
        (`addresses`); `denied(reason)` counts each refusal of a worker's call."""
        self.core = core
        self.gate = gate or CallerGate(None)
        self._domain = tls.domain if tls is not None and tls.enabled else ""
        self._denied = denied
        self._check_addresses = check_addresses
        # The Heartbeat stream that currently speaks for each worker, so that
        # the end of a stale stream does not evict a worker that re-registered.
        self._streams: dict[str, object] = {}

    def _admit(self, context: Context, method: str) -> Caller:
        """The call's caller, admitted by its token for the method's roles; raises to refuse
        it."""
        return self.gate.admit(context.invocation_metadata(), method, ROLES[method])

    def admit_call(self, method: str, context: Context) -> None:
        """A caller RPC's credentials, checked before its undecodable message is refused."""
        if method in ROLES:
            self._admit(context, method)

    def call_refused(self, method: str, error: AgentmeshError) -> None:
        """A call refused before its handler ran: undecodable, or an enum out of range."""
        if method in ("Submit", "StreamSubmit"):
            self.core.refused(None, error)

    @unary
    async def Submit(
        self, request: scheduler_pb2.SubmitRequest, context: Context
    ) -> scheduler_pb2.SubmitResponse:
        caller = self._admit(context, "Submit")
        with telemetry.server_span(SUBMIT, context.invocation_metadata()):
            record = await self._submit(request, context, caller)
            return scheduler_pb2.SubmitResponse(request=_finished(record, request.view))

    @streaming
    async def StreamSubmit(
        self, request: scheduler_pb2.StreamSubmitRequest, context: Context
    ) -> AsyncIterator[scheduler_pb2.StreamSubmitResponse]:
        # Before anything is sent or run: a refused stream carries no event.
        caller = self._admit(context, "StreamSubmit")
        events: asyncio.Queue[Any] = asyncio.Queue()
        request_id = ""

        def on_plan(record: RequestRecord) -> None:
            nonlocal request_id
            request_id = record.request_id
            events.put_nowait(convert.plan_to_proto(record.plan))

        def on_event(event: SubtaskEvent) -> None:
            events.put_nowait(event)

        span = telemetry.start_server_span(STREAM_SUBMIT, context.invocation_metadata())
        with trace.use_span(span, end_on_exit=False):
            # The task copies the current context: the request's spans go under this one.
            run = asyncio.create_task(
                self._submit(request, context, caller, on_plan=on_plan, on_event=on_event)
            )
        run.add_done_callback(lambda _: events.put_nowait(_DONE))
        try:
            while (item := await events.get()) is not _DONE:
                if isinstance(item, SubtaskEvent):
                    yield scheduler_pb2.StreamSubmitResponse(
                        request_id=request_id, subtask=convert.event_to_proto(item)
                    )
                else:
                    yield scheduler_pb2.StreamSubmitResponse(request_id=request_id, plan=item)
            record = run.result()
            yield scheduler_pb2.StreamSubmitResponse(
                request_id=record.request_id, result=_finished(record, request.view)
            )
        finally:
            run.cancel()
            span.end()

    async def _submit(
        self,
        request: scheduler_pb2.SubmitRequest | scheduler_pb2.StreamSubmitRequest,
        context: Context,
        caller: Caller,
        **follow: Any,
    ) -> RequestRecord:
        """Submit and StreamSubmit alike: the request to the core, with the call's deadline,
        as the caller's tenant's."""
        try:
            source = _source(request, self.core.config.max_steps)
            data = wire.struct_to_dict(request.input)
        except AgentmeshError as error:
            self.core.refused(Source(workflow=request.workflow), error)
            raise
        return await self.core.submit(
            request.request_id,
            source,
            data,
            priority=request.priority,
            cost_budget=request.cost_budget_usd,
            input_size=request.input.ByteSize(),
            timeout=context.time_remaining(),
            tenant=caller.tenant,
            **follow,
        )

    @unary
    async def GetRequest(
        self, request: scheduler_pb2.GetRequestRequest, context: Context
    ) -> scheduler_pb2.GetRequestResponse:
        caller = self._admit(context, "GetRequest")
        tenant = caller.reads(request.tenant if request.HasField("tenant") else None)
        record = await self.core.read(request.request_id, context.time_remaining(), tenant)
        # GetRequest exists to inspect a request: FULL unless BASIC is asked for.
        full = request.view != scheduler_pb2.REQUEST_VIEW_BASIC
        return scheduler_pb2.GetRequestResponse(request=convert.request_to_proto(record, full=full))

    @unary
    async def Decompose(
        self, request: scheduler_pb2.DecomposeRequest, context: Context
    ) -> scheduler_pb2.DecomposeResponse:
        self._admit(context, "Decompose")
        data = wire.struct_to_dict(request.input)
        source = _source(request, self.core.config.max_steps)
        if source.plan is None:
            self.core.admission.check_input(data, request.input.ByteSize())
        deadline = self.core.admission.deadline_from(context.time_remaining())
        plan = await self.core.make_plan(source, data, deadline)
        return scheduler_pb2.DecomposeResponse(plan=convert.plan_to_proto(plan))

    @unary
    async def Dispatch(
        self, request: scheduler_pb2.DispatchRequest, context: Context
    ) -> scheduler_pb2.DispatchResponse:
        caller = self._admit(context, "Dispatch")
        with telemetry.server_span(DISPATCH, context.invocation_metadata()):
            outcome = await self.core.dispatch(
                request.request_id,
                request.capability,
                wire.struct_to_dict(request.input),
                priority=request.priority,
                difficulty=wire.difficulty_from_proto(request.difficulty),
                timeout=context.time_remaining(),
                tenant=caller.tenant,
            )
        result = outcome.result
        return scheduler_pb2.DispatchResponse(
            request_id=request.request_id,
            output=wire.dict_to_struct(result.output),
            worker_id=outcome.worker_id,
            model=result.model,
            attempts=outcome.attempts,
            usage=wire.usage_to_proto(result.usage),
            duration=wire.duration(result.duration),
        )

    def _speaks_for(self, context: Context, worker_id: str) -> None:
        """Raise PermissionDenied unless the peer's certificate names `worker_id` (TLS on)."""
        if not self._domain:
            return
        error = check_worker(context, self._domain, worker_id)
        if error is not None:
            self._denied("worker_mismatch")
            log.warning("call refused: another worker's id", extra={"worker_id": worker_id})
            raise error

    @unary
    async def Register(
        self, request: scheduler_pb2.RegisterRequest, context: Context
    ) -> scheduler_pb2.RegisterResponse:
        self._speaks_for(context, request.worker.worker_id)
        # A malformed registration is INVALID_ARGUMENT before its address is judged.
        spec = convert.worker_spec_from_proto(request.worker, request.skills)
        check_registration(spec)
        if self._check_addresses:
            refusal = foreign_address(request.worker.address, context.peer(), bool(self._domain))
            if refusal is not None:
                self._denied("foreign_address")
                log.warning("registration refused: " + refusal)
                raise PermissionDenied(
                    f"{refusal}: register the worker's own address "
                    "(AGENTMESH_WORKER_ADVERTISE), or allow it with "
                    "AGENTMESH_ALLOW_FOREIGN_ADDRESS=1 on the scheduler",
                    reason="FOREIGN_ADDRESS",
                )
        record = self.core.register(spec)
        # A registration starts a new session: the end of a Heartbeat stream opened
        # before it (the worker has given it up) must not evict the worker.
        self._streams.pop(record.worker_id, None)
        log.info(
            "worker registered",
            extra={"worker_id": record.worker_id, "address": record.spec.address},
        )
        return scheduler_pb2.RegisterResponse(
            worker_id=record.worker_id,
            heartbeat_interval=wire.duration(self.core.config.heartbeat_interval),
        )

    @streaming
    async def Heartbeat(
        self,
        # RejectUndecodable hands over a message that did not decode as an Undecodable.
        request_iterator: AsyncIterator[scheduler_pb2.HeartbeatRequest | Undecodable],
        context: Context,
    ) -> AsyncIterator[scheduler_pb2.HeartbeatResponse]:
        token = object()
        worker_id = ""
        seconds = self.core.config.heartbeat_interval
        interval = wire.duration(seconds)
        limiter = BeatLimiter(seconds, self.core.clock.now())
        try:
            async for beat in request_iterator:
                if isinstance(beat, Undecodable):
                    raise beat.refuse()
                if not beat.worker_id:
                    raise InvalidArgument("a heartbeat names its worker_id")
                self._speaks_for(context, beat.worker_id)
                worker_id = beat.worker_id
                verdict = limiter.admit(self.core.clock.now(), beat.health.draining)
                if verdict is Verdict.REFUSE:
                    log.warning("heartbeat flood: stream refused", extra={"worker_id": worker_id})
                    raise ResourceExhausted(
                        f"heartbeats faster than {limiter.burst} per interval of {seconds:g}s: "
                        "report once per heartbeat_interval",
                        retry_after=seconds,
                        reason="HEARTBEAT_FLOOD",
                    )
                if verdict is Verdict.COALESCE:
                    # The report before it is recent enough; the next one is applied.
                    yield scheduler_pb2.HeartbeatResponse(heartbeat_interval=interval)
                    continue
                try:
                    self.core.heartbeat(worker_id, convert.health_from_proto(beat.health))
                except NotFound:
                    # Evicted or never known: this stream no longer speaks for the worker.
                    if self._streams.get(worker_id) is token:
                        del self._streams[worker_id]
                    yield scheduler_pb2.HeartbeatResponse(
                        directive=scheduler_pb2.HEARTBEAT_DIRECTIVE_REGISTER,
                        heartbeat_interval=interval,
                    )
                    continue
                self._streams[worker_id] = token
                yield scheduler_pb2.HeartbeatResponse(heartbeat_interval=interval)
        finally:
            if worker_id and self._streams.get(worker_id) is token:
                del self._streams[worker_id]
                log.info("heartbeat stream ended; evicting", extra={"worker_id": worker_id})
                await self.core.evict(worker_id, "stream_closed")

    @unary
    async def ListWorkers(
        self, request: scheduler_pb2.ListWorkersRequest, context: Context
    ) -> scheduler_pb2.ListWorkersResponse:
        self._admit(context, "ListWorkers")
        registry = self.core.registry
        records = (
            registry.offering(request.capability) if request.capability else registry.workers()
        )
        now, wall = self.core.clock.now(), time.time()
        return scheduler_pb2.ListWorkersResponse(
            workers=[
                convert.worker_status_to_proto(r, now, wall)
                for r in sorted(records, key=lambda r: r.worker_id)
            ]
        )

    @unary
    async def GetStats(
        self, request: scheduler_pb2.GetStatsRequest, context: Context
    ) -> scheduler_pb2.GetStatsResponse:
        self._admit(context, "GetStats")
        if not 0 <= request.recent_requests <= MAX_RECENT:
            raise InvalidArgument(
                f"recent_requests must be between 0 and {MAX_RECENT}",
                [FieldViolation("recent_requests", f"0 to {MAX_RECENT}")],
            )
        core = self.core
        now = core.clock.now()
        summary = core.stats.summary(now)
        ages = core.dispatcher.slots.oldest_ages()
        slacks = core.dispatcher.slots.least_slacks()
        return scheduler_pb2.GetStatsResponse(
            queues=[
                scheduler_pb2.QueueStats(
                    capability=capability,
                    depth=depth,
                    oldest_age=wire.duration(ages[capability]),
                    least_slack=(
                        wire.duration(slacks[capability]) if capability in slacks else None
                    ),
                )
                for capability, depth in sorted(core.dispatcher.slots.queue_depths().items())
            ],
            active_requests=core.requests.active(),
            window=wire.duration(core.stats.window),
            succeeded=summary.counts.get("SUCCEEDED", 0),
            failed=summary.counts.get("FAILED", 0),
            cancelled=summary.counts.get("CANCELLED", 0),
            requests_per_second=summary.rate,
            latency_p50=wire.duration(summary.p50),
            latency_p95=wire.duration(summary.p95),
            latency_p99=wire.duration(summary.p99),
            recent=[
                scheduler_pb2.RequestSummary(
                    request_id=f.request_id,
                    workflow=f.workflow,
                    state=scheduler_pb2.RequestState.Value(f"REQUEST_STATE_{f.state}"),
                    duration=wire.duration(f.duration),
                    finished_at=wire.timestamp(f.wall_time),
                    error_code=f.error_code,
                    tenant=f.tenant,
                )
                for f in core.stats.recent(request.recent_requests or DEFAULT_RECENT)
            ],
        )


def _finished(
    record: RequestRecord, view: scheduler_pb2.RequestView.ValueType
) -> scheduler_pb2.Request:
    """The response for a finished request in the view asked for (BASIC by default: the plan
    and subtasks are built only when FULL is asked for); a failed one becomes its status."""
    if record.error is not None:
        error = record.error
        if not error.reason:
            error = replace(error, reason=f"REQUEST_{record.state}")
        raise error.to_error(request_id=record.request_id)
    return convert.request_to_proto(record, full=view == scheduler_pb2.REQUEST_VIEW_FULL)
