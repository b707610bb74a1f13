"""One attempt of a subtask on one worker: the call, its span, its accounting.

An attempt runs in its caller's task (the step's, or a hedge's); evicting
its worker cancels that task, and the cancel becomes `Evicted`, which the
dispatcher turns into a retry. When it ends, the worker's slot is freed
and what the attempt says of the worker (its latency, a failure) is
learnt. A step granted a slot may take the steps that follow it to the
same worker (`fragments`): they are claimed here, each an attempt of its
own that the step's task follows to its end, or drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from google.rpc import code_pb2
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from agentmesh.errors import AgentmeshError, Unavailable
from agentmesh.scheduler.calls import (
    DispatchObserver,
    ExecuteResult,
    Follower,
    Outcome,
    SubtaskCall,
    WorkerTransport,
)
from agentmesh.scheduler.critical_path import CapabilityLatencies
from agentmesh.scheduler.fragments import Offload
from agentmesh.scheduler.hedging import Hedger
from agentmesh.scheduler.outliers import OutlierDetector
from agentmesh.scheduler.registry import Registry, WorkerRecord
from agentmesh.server import logs, telemetry
from agentmesh.server.clock import Clock

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Attempt:
    #: The task the attempt runs in (the step's, or a hedge's).
    task: asyncio.Task[object]
    evicted: bool = False


@dataclass
class _Running:
    """Attempts in flight, by worker, so that eviction can cancel them."""

    by_worker: dict[str, set[_Attempt]] = field(default_factory=dict)
    #: Set when the last attempt on a worker that is leaving ends (see `evict`).
    emptied: dict[str, asyncio.Future[None]] = field(default_factory=dict)


class Attempts:
    """Runs attempts on workers and keeps those in flight, by worker."""

    def __init__(
        self,
        registry: Registry,
        transport: WorkerTransport,
        clock: Clock,
        observer: DispatchObserver,
        hedger: Hedger,
        outliers: OutlierDetector,
        offload: Offload,
        attempt_timeout: float,
        freed: Callable[[WorkerRecord], None],
        latencies: CapabilityLatencies | None = None,
    ) -> None:
        self.registry = registry
        self.transport = transport
        self.clock = clock
        self.observer = observer
        self.hedger = hedger
        self.outliers = outliers
        self.offload = offload
        #: Longest a single attempt may take, within the subtask's deadline.
        self.attempt_timeout = attempt_timeout
        #: Told when a worker's slot frees (the dispatcher serves its queues).
        self._freed = freed
        #: Each capability's typical attempt latency (for critical paths), fed here.
        self.latencies = latencies or CapabilityLatencies(0.0)
        self._running = _Running()

    def cancel(self, worker_id: str) -> None:
        """Cancel the attempts in flight on an evicted worker: each becomes `Evicted`."""
        for attempt in self._running.by_worker.pop(worker_id, set()):
            attempt.evicted = True
            attempt.task.cancel()

    async def let_answer(self, worker_id: str) -> None:
        """A worker that said it was leaving closed its stream once it had answered; the
        answers may still be on their way (on another connection), so its attempts get
        their own time to end rather than being cancelled and run again."""
        if not self._running.by_worker.get(worker_id):
            return
        emptied = asyncio.get_running_loop().create_future()
        self._running.emptied[worker_id] = emptied
        try:
            await asyncio.wait({emptied}, timeout=self.attempt_timeout)
        finally:
            self._running.emptied.pop(worker_id, None)

    async def run(
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        hedge: bool = False,
        follower: Follower | None = None,
    ) -> ExecuteResult:
        """One attempt on one worker, as a span of the request's trace (when tracing is on)."""
        logs.SUBTASK_ID.set(call.subtask_id)
        if not telemetry.recording():
            return await self._call(worker, call, attempt, hedge, follower)
        attributes: dict[str, AttributeValue] = {
            telemetry.REQUEST_ID: call.request_id,
            telemetry.SUBTASK_ID: call.subtask_id,
            telemetry.CAPABILITY: call.capability,
            telemetry.WORKER_ID: worker.worker_id,
            telemetry.ATTEMPT: attempt,
            "rpc.system": "grpc",
            "rpc.service": "agentmesh.v1.WorkerService",
            "rpc.method": "ExecuteStream" if worker.spec.execute_stream else "Execute",
            "server.address": worker.spec.address,
            "agentmesh.hedge": hedge,
        }
        if follower is not None:
            attributes["agentmesh.fragment"] = follower.fragment
        with telemetry.tracer().start_as_current_span(
            f"subtask {call.capability}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            code = "OK"
            try:
                return await self._call(worker, call, attempt, hedge, follower)
            except Evicted:
                code = "UNAVAILABLE"
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except AgentmeshError as error:
                code = error.code_name
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code_pb2.Code.Value(code))
                if code != "OK":
                    span.set_status(StatusCode.ERROR, code)

    async def _call(
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        hedge: bool = False,
        follower: Follower | None = None,
    ) -> ExecuteResult:
        """Run the attempt in the caller's task; eviction cancels that task at this await.

        A follower was sent with its fragment's first step: this waits for its result.
        """
        started = self.clock.now()
        timeout = min(self.attempt_timeout, call.deadline - started)
        task = asyncio.current_task()
        assert task is not None
        running = _Attempt(task)
        self._running.by_worker.setdefault(worker.worker_id, set()).add(running)
        pending = worker.pending.start(started)
        code = "OK"
        took: float | None = None  # the latency to learn from, when it is not the call's own
        followers: list[Follower] = []
        try:
            if follower is not None:
                result = await follower.done
                took = result.duration  # its wait for the steps before it is not the worker's
                return result
            if not hedge:
                followers = self._claim(worker, call)
            if followers:
                result = await self.transport.execute(worker, call, attempt, timeout, followers)
            else:
                result = await self.transport.execute(worker, call, attempt, timeout)
            now = self.clock.now()
            self.observer.overhead(now - started - result.duration)
            self.hedger.observe(call.capability, now - started)
            self.latencies.observe(call.capability, now - started)
            return result
        except asyncio.CancelledError:
            if follower is not None:
                self._stop(follower)
            # An eviction's cancel becomes a retry; any other cancel (the request's) stands.
            if running.evicted and task.uncancel() == 0:
                code = "UNAVAILABLE"
                raise Evicted() from None
            code = "CANCELLED"
            raise
        except AgentmeshError as error:
            code = error.code_name
            if error.reason != "FRAGMENT_BROKEN":  # not run: it says nothing of the worker
                log.warning(
                    "subtask attempt failed",
                    extra={
                        "worker_id": worker.worker_id,
                        "attempt": attempt,
                        "code": code,
                        "error": error.message,
                    },
                )
            raise
        finally:
            for unsent in followers:
                if unsent.stop is None and not unsent.done.done():
                    unsent.done.set_exception(
                        Unavailable("its fragment was not sent", reason="FRAGMENT_BROKEN")
                    )
            now = self.clock.now()
            worker.pending.finish(pending)
            attempts = self._running.by_worker.get(worker.worker_id)
            if attempts is not None:
                attempts.discard(running)
                emptied = self._running.emptied.get(worker.worker_id)
                if not attempts and emptied is not None and not emptied.done():
                    emptied.set_result(None)
            seconds = now - started if took is None else took
            self.observer.attempt_finished(call.capability, worker.worker_id, seconds, code)
            self._release(worker, seconds, code, now)

    # -- offload ------------------------------------------------------------------------

    def _claim(self, worker: WorkerRecord, call: SubtaskCall) -> list[Follower]:
        """The steps that go to the worker with this one, when offload is on (see
        `fragments`): each takes a slot of the worker now, and may take from its sending
        one attempt's time more than the step before it."""
        if (
            call.fragment is None
            or not (worker.spec.fragments and worker.spec.execute_stream)
            or not self.offload.active
        ):
            return []
        room = min(worker.spec.capacity - worker.in_flight, self.offload.max_steps - 1)
        if room <= 0:
            return []
        followers = call.fragment(worker, room)
        now = self.clock.now()
        for depth, follower in enumerate(followers, start=2):
            follower.worker = worker
            follower.timeout = min(self.attempt_timeout * depth, follower.call.deadline - now)
            worker.in_flight += 1
        return followers

    async def follow(self, follower: Follower) -> Outcome:
        """A follower's result, accounted as an attempt of its own on its fragment's worker."""
        worker = follower.worker
        assert worker is not None
        follower.settled = True
        try:
            result = await self.run(worker, follower.call, follower.attempt, follower=follower)
        except Evicted:
            raise Unavailable(
                f"worker {worker.worker_id} left the mesh during the subtask",
                reason="WORKER_EVICTED",
            ) from None
        self.observer.offloaded(follower.call.capability)
        return Outcome(result, worker.worker_id, follower.attempt, worker.spec.tier)

    def drop(self, follower: Follower) -> None:
        """A follower its step will not follow (the request ended first, or a step before
        it failed): stop it on the worker and free its slot."""
        if follower.settled:
            return
        follower.settled = True
        self._stop(follower)
        if follower.worker is not None:
            self._release(follower.worker, 0.0, "CANCELLED", self.clock.now())

    @staticmethod
    def _stop(follower: Follower) -> None:
        if follower.stop is not None:
            follower.stop()
        follower.done.cancel()

    def _release(self, worker: WorkerRecord, seconds: float, code: str, now: float) -> None:
        worker.in_flight = max(worker.in_flight - 1, 0)
        if code == "OK":
            worker.observe_latency(seconds, now)
        if code != "CANCELLED":
            # A worker's own failures count against it; a deadline that was
            # simply too short for anyone would also land here, which the
            # decay forgives.
            failed = code not in ("OK", "INVALID_ARGUMENT", "ABORTED")
            worker.errors.observe(failed, now)
            if self.outliers.observe(worker, failed, now):
                self.observer.worker_ejected(worker.worker_id)
                log.warning(
                    "worker ejected",
                    extra={
                        "worker_id": worker.worker_id,
                        "cool_down_s": round(worker.ejected_until - now, 1),
                        "ejections": worker.ejections,
                    },
                )
        if self.registry.get(worker.worker_id) is worker:
            self._freed(worker)


class Evicted(Exception):
    """The worker running an attempt was evicted; the attempt goes back to the queue."""
