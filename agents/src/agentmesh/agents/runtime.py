"""The worker runtime: serves WorkerService, registers, streams health, drains.

A worker runs each subtask once: the result of a (request id, subtask id)
it has finished is kept (a bounded window, in memory or in a SQLite file
that outlives the process) and returned again on a repeat, and a repeat of
a subtask still running waits for that run; the same ids with another
capability or input are refused. Concurrency is bounded by the configured
capacity; subtasks beyond it wait inside the worker and are reported as its
queue. A subtask whose call is cancelled stops if the scheduler is alive,
and otherwise finishes and is kept for the restarted scheduler's repeat
(`_settle`); registering and beating are `membership.py`'s.

On SIGTERM (or `shutdown()`) the worker drains: health goes NOT_SERVING,
the scheduler is told it is draining and sends no more work, in-flight
subtasks finish, the Heartbeat stream closes, and the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from agentmesh.agents.backend import Backend, BackendResult
from agentmesh.agents.checks import check_ids, check_input, check_same_work
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.membership import Membership
from agentmesh.agents.results import Key, Stored, input_digest, make_result_store
from agentmesh.errors import AgentmeshError, Unavailable, Unimplemented
from agentmesh.server import logs, ports, reflection, telemetry
from agentmesh.server.estimators import ErrorRate, PeakEwma
from agentmesh.server.handlers import RejectUndecodable, unary
from agentmesh.server.metrics import WorkerMetrics, serve_metrics
from agentmesh.server.skills import SKILLS, Skill, output_violations
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import (
    dict_to_struct,
    duration,
    struct_to_dict,
    usage_to_proto,
)

log = logging.getLogger(__name__)

SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
EXECUTE = f"{SERVICE_NAME}/Execute"
Context = aio.ServicerContext[Any, Any]


DETACHED_LIMIT = 60.0
"""Seconds a subtask called without a deadline may run on once its caller is gone."""


@dataclass(frozen=True)
class _Running:
    """A subtask running now, with the work it was asked for."""

    capability: str
    digest: str
    task: asyncio.Task[worker_pb2.ExecuteResponse]


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @unary
    async def Execute(
        self, request: worker_pb2.ExecuteRequest, context: Context
    ) -> worker_pb2.ExecuteResponse:
        with telemetry.server_span(
            EXECUTE,
            context.invocation_metadata(),
            **{
                telemetry.REQUEST_ID: request.request_id,
                telemetry.SUBTASK_ID: request.subtask_id,
                telemetry.CAPABILITY: request.capability,
                telemetry.WORKER_ID: self.worker.worker_id,
                telemetry.ATTEMPT: request.attempt,
            },
        ) as span:
            left = context.time_remaining()
            deadline = None if left is None else asyncio.get_running_loop().time() + left
            response = await self.worker.execute(request, deadline)
            span.set_attribute("agentmesh.replayed", response.replayed)
            return response


class Worker:
    """One worker agent process: `await start()`, `await shutdown()`, or `run()`."""

    def __init__(self, config: WorkerConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        offered = set(config.skills) if config.skills else set(backend.capabilities())
        unknown = offered - set(SKILLS)
        if unknown:
            raise ValueError(f"unknown skills {sorted(unknown)}; known: {sorted(SKILLS)}")
        unable = offered - set(backend.capabilities())
        if unable:
            raise ValueError(f"the {backend.name} backend cannot run {sorted(unable)}")
        self.skills = frozenset(offered)
        self.worker_id = config.worker_id or f"{backend.name}-{uuid.uuid4().hex[:8]}"
        self.tier = worker_tier(config.tier, backend)
        self.metrics = WorkerMetrics(CollectorRegistry())
        self.metrics.info.labels(
            self.worker_id, backend.name, backend.model, TIER_NAMES[self.tier]
        ).set(1)
        self.health = health.aio.HealthServicer()
        self.server = aio.server(interceptors=[RejectUndecodable()])
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(
            self.server,
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
        )
        self.address = ""
        self.draining = False
        # A model server that runs fewer calls at once caps the capacity: the rest wait in
        # the mesh, where priorities and deadlines apply, not inside the server.
        limit = getattr(backend, "concurrency", None) or config.capacity
        self.capacity = min(config.capacity, limit)
        self._slots = asyncio.Semaphore(self.capacity)
        self._in_flight = 0
        self._waiting = 0
        self._results = make_result_store(config.store, config.results_kept)
        self._running: dict[Key, _Running] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._latency = PeakEwma(0.05, 10.0, time.monotonic())
        self._errors = ErrorRate(30.0, time.monotonic())
        self.membership = Membership(config.scheduler, self.info, self.health_report)
        self._stopped = asyncio.Event()
        self._shutdown_started = False

    # -- Execute ------------------------------------------------------------------

    async def execute(
        self, request: worker_pb2.ExecuteRequest, deadline: float | None = None
    ) -> worker_pb2.ExecuteResponse:
        """Run one subtask, or answer a repeat of it; `deadline` is the call's, on the loop's clock.

        A repeat must be the same work: the same capability and input under
        the same ids. If the call is cancelled while the subtask runs, the
        subtask goes on detached until `_settle` knows why (see `link.py`).
        """
        logs.REQUEST_ID.set(request.request_id)
        logs.SUBTASK_ID.set(request.subtask_id)
        check_ids(request)
        key = (request.request_id, request.subtask_id)
        data = struct_to_dict(request.input)
        digest = input_digest(data)
        stored = self._results.get(key)
        if stored is not None:
            check_same_work(request, digest, stored.capability, stored.input_digest, "finished")
            self.metrics.replays.inc()
            return _replayed(stored.response)
        running = self._running.get(key)
        if running is not None:
            check_same_work(request, digest, running.capability, running.digest, "running")
            self.metrics.replays.inc()
            return _replayed(await asyncio.shield(running.task))
        if self.draining:
            raise Unavailable(f"worker {self.worker_id} is draining", reason="DRAINING")
        if request.capability not in self.skills:
            raise Unimplemented(
                f"worker {self.worker_id} does not offer {request.capability!r}; "
                f"it offers {', '.join(sorted(self.skills))}",
                reason="CAPABILITY_NOT_OFFERED",
            )
        skill = SKILLS[request.capability]
        check_input(skill, data)
        task = asyncio.create_task(self._run_and_keep(key, skill.name, digest, data))
        self._running[key] = _Running(skill.name, digest, task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                settle = asyncio.create_task(self._settle(task, deadline))
                self._settling.add(settle)
                settle.add_done_callback(self._settling.discard)
            raise

    async def _run_and_keep(
        self, key: Key, capability: str, digest: str, data: dict[str, Any]
    ) -> worker_pb2.ExecuteResponse:
        try:
            response = await self._run(capability, data)
            # Stored before the reply: a repeat after a lost reply, or a restart, is answered
            # from it; so is the restarted scheduler's repeat of a subtask finished detached.
            self._results.put(key, Stored(capability, digest, response))
            return response
        finally:
            self._running.pop(key, None)

    async def _settle(
        self, task: asyncio.Task[worker_pb2.ExecuteResponse], deadline: float | None
    ) -> None:
        """A running subtask's call was cancelled: stop it, or finish it if the scheduler is gone.

        A live scheduler cancelled it on purpose (the request was cancelled,
        a hedge won, the worker was evicted): it stops. A scheduler that is
        gone cancelled every call on its connection by dying; the subtask
        finishes, within the call's deadline, and its result is stored for
        the restarted scheduler's repeat.
        """
        loop = asyncio.get_running_loop()
        interval = self.membership.heartbeat_interval
        if await self.membership.link.alive(timeout=max(2.5 * interval, 1.0)):
            task.cancel()
            return
        left = DETACHED_LIMIT if deadline is None else deadline - loop.time()
        log.warning(
            "the scheduler is gone; finishing the subtask to keep its result",
            extra={"seconds_left": round(left, 3)},
        )
        await asyncio.wait([task], timeout=max(left, 0.0))
        task.cancel()  # past the call's deadline nobody will ask for it

    async def _run(self, capability: str, data: dict[str, Any]) -> worker_pb2.ExecuteResponse:
        skill = SKILLS[capability]
        self._waiting += 1
        self.metrics.queue_length.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue_length.set(self._waiting)
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        started = time.monotonic()
        code = "OK"
        try:
            result = await self._call_backend(skill, data)
            violations = output_violations(skill, result.output)
            if violations:
                raise AgentmeshError(
                    f"{self.backend.name} produced output for {capability} that fails its schema: "
                    + "; ".join(f"{f}: {d}" for f, d in violations[:5]),
                    reason="OUTPUT_INVALID",
                )
        except AgentmeshError as error:
            code = error.code_name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            self._slots.release()
            self._in_flight -= 1
            now = time.monotonic()
            elapsed = now - started
            self.metrics.in_flight.set(self._in_flight)
            self.metrics.subtasks.labels(capability, code).inc()
            self.metrics.subtask_seconds.labels(capability).observe(elapsed)
            if code != "CANCELLED":
                self._errors.observe(code != "OK", now)
            if code == "OK":
                self._latency.observe(elapsed, now)
        return worker_pb2.ExecuteResponse(
            output=dict_to_struct(result.output),
            usage=usage_to_proto(result.usage),
            model=result.model,
            duration=duration(elapsed),
        )

    async def _call_backend(self, skill: Skill, data: dict[str, Any]) -> BackendResult:
        """The backend call, as a span: a GenAI model call when there is a model."""
        model = self.backend.model
        attributes: dict[str, Any] = {"agentmesh.backend": self.backend.name}
        if model:
            attributes |= {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self.backend.name,
                "gen_ai.request.model": model,
            }
        name = f"chat {model}" if model else f"{self.backend.name} {skill.name}"
        with telemetry.tracer().start_as_current_span(name, attributes=attributes) as span:
            result = await self.backend.run(skill, data)
            if model:
                span.set_attribute("gen_ai.response.model", result.model or model)
                span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
            return result

    # -- membership ------------------------------------------------------------------

    def info(self) -> worker_pb2.WorkerInfo:
        return worker_pb2.WorkerInfo(
            worker_id=self.worker_id,
            address=self.address,
            capabilities=sorted(self.skills),
            backend=self.backend.name,
            model=self.backend.model,
            tier=self.tier,
            capacity=self.capacity,
            input_price_per_mtok=self.backend.input_price_per_mtok,
            output_price_per_mtok=self.backend.output_price_per_mtok,
        )

    def health_report(self) -> worker_pb2.WorkerHealth:
        return worker_pb2.WorkerHealth(
            in_flight=self._in_flight,
            capacity=self.capacity,
            queue_length=self._waiting,
            latency_estimate=duration(self._latency.estimate()),
            error_rate=self._errors.rate(time.monotonic()),
            draining=self.draining,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Serve, then register and start the health stream (without waiting for it)."""
        port = self.server.add_insecure_port(self.config.listen)
        if port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        self.address = self.config.advertise or f"{self.config.listen.rpartition(':')[0]}:{port}"
        await self.server.start()
        metrics = ""
        if self.config.metrics_listen:
            metrics_port = serve_metrics(self.config.metrics_listen, self.metrics.registry)
            metrics = ports.bound(self.config.metrics_listen, metrics_port)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.membership.start()
        ports.announce(
            "worker", self.config.ports_file, ports.bound(self.config.listen, port), metrics
        )

    async def wait_registered(self, timeout: float) -> None:
        await asyncio.wait_for(self.membership.registered.wait(), timeout)

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain and stop: safe to call more than once."""
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        grace = self.config.drain_timeout if grace is None else grace
        self.draining = True
        self.membership.beat_now()
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        if self._running:
            await asyncio.wait([r.task for r in self._running.values()], timeout=grace)
        for settle in list(self._settling):  # what is still running is given up with the process
            settle.cancel()
        # The last beat says "draining"; closing the stream removes the worker.
        await self.membership.stop()
        await self.server.stop(max(deadline - time.monotonic(), 0.5))
        await self.membership.close()
        self._results.close()
        self._stopped.set()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.shutdown()))
        await self._stopped.wait()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(grace=1.0)


TIERS = {
    "builtin": worker_pb2.TIER_BUILTIN,
    "small": worker_pb2.TIER_SMALL,
    "large": worker_pb2.TIER_LARGE,
}


TIER_NAMES = {value: name for name, value in TIERS.items()}


def worker_tier(name: str, backend: Backend) -> worker_pb2.Tier.ValueType:
    """The declared tier; by default builtin without a model, small with one."""
    if not name:
        has_model = backend.model and backend.name != "sim"
        return worker_pb2.TIER_SMALL if has_model else worker_pb2.TIER_BUILTIN
    try:
        return TIERS[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}; choose one of {', '.join(TIERS)}") from None


def _replayed(response: worker_pb2.ExecuteResponse) -> worker_pb2.ExecuteResponse:
    copy = worker_pb2.ExecuteResponse()
    copy.CopyFrom(response)
    copy.replayed = True
    return copy
