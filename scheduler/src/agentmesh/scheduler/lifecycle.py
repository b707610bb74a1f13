"""A request's life once admitted: stored, committed, run, finished; resumed or run again.

`SchedulerCore` decides whether a request is new, a repeat or a rerun;
`RequestRunner` does the rest with the store, so that nothing is
acknowledged before it is durable: the request's rows are committed before
`on_plan` is called (the plan event, the first acknowledgement; the steps
wait for it too), and its final state before its outcome is returned. A
request nobody is told of before its outcome (Submit) runs at once. While the store cannot write,
new work is refused (UNAVAILABLE, reason STORE_UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentmesh.errors import Unavailable
from agentmesh.scheduler.calls import EventSink, ignore_events
from agentmesh.scheduler.executor import Executor
from agentmesh.scheduler.records import (
    ErrorRecord,
    RequestRecord,
    SubtaskRecord,
    key_fields,
    split_key,
)
from agentmesh.scheduler.requests import RequestIndex
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.stats import Finished, RequestWindow
from agentmesh.scheduler.store import STORE_UNAVAILABLE, Store, StoredRequest
from agentmesh.scheduler.tiers import Budget
from agentmesh.server import logs
from agentmesh.server.clock import Clock

if TYPE_CHECKING:
    from agentmesh.scheduler.replicas import Replicas

log = logging.getLogger(__name__)

#: Seconds a commit is still waited for when the request's deadline has passed.
COMMIT_GRACE = 1.0

PlanSink = Callable[[RequestRecord], None]


class RequestRunner:
    """Runs requests through the executor, journalled in the store (if any)."""

    def __init__(
        self,
        executor: Executor,
        store: Store | None,
        requests: RequestIndex,
        stats: RequestWindow,
        clock: Clock,
    ) -> None:
        self.executor = executor
        self.store = store
        self.requests = requests
        self.stats = stats
        self.clock = clock
        #: Set while the scheduler shuts down: requests it cancels stay
        #: unfinished in the store, to be resumed by the next scheduler.
        self.stopping = False
        #: With a store several schedulers share: follows the requests others run.
        self.replicas: Replicas | None = None
        #: Keys of requests this scheduler ran until another replica took them over: nothing it
        #: does with them any more is kept, and their callers are answered from the store.
        self.lost: set[str] = set()

    async def rerun(
        self,
        record: RequestRecord,
        deadline: float,
        fingerprint: str,
        on_plan: PlanSink | None,
        on_event: EventSink,
    ) -> RequestRecord:
        """Run a finished request again under its id, keeping the subtasks that succeeded."""
        log.info("running a failed request again", extra=key_fields(record.key))
        kept = {s.id: s for s in record.subtasks.values() if s.state == SubtaskState.SUCCEEDED}
        record.subtasks = {
            s.id: kept.get(s.id) or SubtaskRecord(s.id, s.capability) for s in record.plan.steps
        }
        record.state, record.answer, record.error, record.finished_at = (
            RequestState.RUNNING,
            None,
            None,
            None,
        )
        if record.budget is not None:
            record.budget = Budget(record.budget.limit)
            record.budget.spent = sum(s.usage.cost_usd for s in kept.values())
        return await self.start(record, deadline, fingerprint, on_plan, on_event)

    async def start(
        self,
        record: RequestRecord,
        deadline: float,
        fingerprint: str,
        on_plan: PlanSink | None,
        on_event: EventSink,
    ) -> RequestRecord:
        """Store the request, run it, and return it once its outcome is committed."""
        self.lost.discard(record.key)
        if self.store is not None:
            self.store.save_request(record, self._wall(deadline), fingerprint)
        task = asyncio.create_task(
            self._run(record, deadline, on_event, on_plan=on_plan), name=record.key
        )
        self.requests.start(record, task, fingerprint)
        # Cancelling the caller (the client went away) cancels the request.
        try:
            await task
        except asyncio.CancelledError:
            if not self._lost_here(record.key):
                raise
            return await self.followed(record.key, deadline)
        if record.error is not None and record.error.reason == STORE_UNAVAILABLE:
            raise Unavailable(record.error.message, reason=STORE_UNAVAILABLE, metadata=self._where)
        await self.durable(deadline)
        if record.key in self.lost:  # its outcome was refused: another replica's
            return await self.followed(record.key, deadline)
        return record

    def _lost_here(self, key: str) -> bool:
        """Whether a cancellation is the request's loss to another replica, not the
        caller's going away."""
        current = asyncio.current_task()
        return key in self.lost and not (current is not None and current.cancelling())

    async def followed(self, key: str, deadline: float) -> RequestRecord:
        """The outcome of the request kept under `key` that another replica runs, read
        from the store once it is finished there."""
        assert self.replicas is not None
        record = await self.replicas.follow(key, deadline)
        if record is None:  # cannot be: a request is never deleted while it runs
            raise Unavailable(f"request {split_key(key)[1]!r} is gone from the store")
        return record

    def lose(self, key: str) -> bool:
        """Another replica owns the request kept under `key` now: stop running it, keep
        nothing of it. False when it was already known lost (writes queued before the
        loss was found are refused in later batches too)."""
        if key in self.lost:
            return False
        self.lost.add(key)
        task = self.requests.running(key)
        self.requests.forget(key)
        if task is not None and not task.done():
            task.cancel()
        return True

    @property
    def _where(self) -> dict[str, str]:
        return {"store": getattr(self.store, "path", "")}

    def check_store(self) -> None:
        """Refuse new work while the store cannot write: it could not be kept."""
        if self.store is not None and not self.store.up:
            raise Unavailable(
                f"the request store cannot write ({self.store.problem}); "
                "new requests are refused until it can",
                reason=STORE_UNAVAILABLE,
                metadata=self._where,
            )

    async def durable(self, deadline: float) -> None:
        """Wait until what is queued for the store is committed, within the deadline.

        Raises UNAVAILABLE (STORE_UNAVAILABLE) when it is not: what the
        scheduler would answer could be lost. The wait ends a little before
        the deadline, so that the caller hears why; a deadline already past
        (the caller has gone) still gets COMMIT_GRACE seconds.
        """
        if self.store is None:
            return
        remaining = deadline - self.clock.now()
        timeout = remaining - min(0.1, remaining / 10) if remaining > 0 else COMMIT_GRACE
        if not await self.store.committed(timeout):
            raise Unavailable(
                f"the request store could not commit within the deadline ({self.store.problem})",
                reason=STORE_UNAVAILABLE,
                metadata=self._where,
            )

    def _wall(self, deadline: float) -> float:
        """A deadline on the injected clock as wall-clock time, for the store."""
        return time.time() + (deadline - self.clock.now())

    async def _run(
        self,
        record: RequestRecord,
        deadline: float,
        on_event: EventSink,
        *,
        on_plan: PlanSink | None = None,
        delay: float = 0.0,
    ) -> RequestRecord:
        """Run a stored request: after `delay` (recovery), once its row is committed when
        someone is told of it now (`on_plan`), or at once (its outcome waits for the commit).

        Not waiting spares a request the store's round trip before its first step; the
        price is that a store that fails just then has run the steps of a request that is
        then answered UNAVAILABLE (its repeat is answered from the workers' stores).
        """
        logs.working_on(record.request_id, record.tenant)
        if delay > 0:
            await asyncio.sleep(delay)
        elif on_plan is not None:
            try:
                await self.durable(deadline)
            except asyncio.CancelledError:
                record.state = RequestState.CANCELLED
                record.error = ErrorRecord("CANCELLED", "the request was cancelled")
                record.finished_at = time.time()
                if self.store is not None and not self.stopping:
                    self.store.finish_request(record)
                raise
            except Unavailable as error:
                # Not committed, so not accepted: nothing ran, and a repeat runs it.
                record.state, record.error = RequestState.FAILED, ErrorRecord.of(error)
                record.finished_at = time.time()
                if self.store is not None:
                    self.store.finish_request(record)
                return record
        if on_plan is not None:
            on_plan(record)
        started = self.clock.now()
        try:
            await self.executor.execute(record, deadline, on_event)
        finally:
            record.finished_at = time.time()
            # Another replica's now (`lose`): it finishes the request and counts it.
            if record.key not in self.lost:
                self._finished(record, started)
        return record

    def _finished(self, record: RequestRecord, started: float) -> None:
        """Store, count and log a request's outcome."""
        if self.store is not None and not (
            self.stopping and record.state == RequestState.CANCELLED
        ):
            self.store.finish_request(record)
        now = self.clock.now()
        self.executor.dispatcher.observer.request_finished(
            record.plan.workflow,
            record.state,
            record.error.code if record.error else "OK",
            now - started,
        )
        self.stats.record(
            Finished(
                request_id=record.request_id,
                workflow=record.plan.workflow,
                state=record.state,
                duration=now - started,
                at=now,
                wall_time=record.finished_at or time.time(),
                error_code=record.error.code if record.error else "",
                tenant=record.tenant,
            )
        )
        log.info(
            "request finished",
            extra={
                "workflow": record.plan.workflow,
                "state": record.state,
                "duration_ms": round((now - started) * 1000, 1),
                "error": record.error.message if record.error else None,
            },
        )

    def recover(self, delay: float = 0.0) -> int:
        """Register every request the store has unfinished (after a restart); how many.

        Each becomes a running request at once, so that a repeat of its id
        attaches to it; it resumes after `delay` seconds (time for workers to
        register again). Finished subtasks keep their outputs and are not
        run again; the others are dispatched again, preferring the worker
        that had them. A request whose deadline passed while the scheduler
        was down fails with DEADLINE_EXCEEDED.
        """
        if self.store is None:
            return 0
        return self.resume(list(self.store.unfinished()), delay)

    def resume(self, unfinished: list[StoredRequest], delay: float = 0.0) -> int:
        """Resume requests read from the store unfinished (see `recover`); how many. Also
        for those taken over from another replica."""
        assert self.store is not None
        resumed = 0
        for stored in unfinished:
            record = stored.record
            self.lost.discard(record.key)
            if self.requests.running(record.key) is not None:
                continue
            for subtask in record.subtasks.values():
                if subtask.state in (SubtaskState.QUEUED, SubtaskState.RUNNING):
                    subtask.state = SubtaskState.PENDING
            remaining = stored.deadline - time.time()
            if remaining <= 0:
                record.state = RequestState.FAILED
                record.error = ErrorRecord(
                    "DEADLINE_EXCEEDED", "the deadline passed while the scheduler was down"
                )
                self.executor.cancel_unfinished(record, record.error.message)
                record.finished_at = time.time()
                self.store.finish_request(record)
                continue
            deadline = self.clock.now() + remaining
            task = asyncio.create_task(
                self._run(record, deadline, ignore_events, delay=delay), name=record.key
            )
            self.requests.start(record, task, stored.fingerprint)
            resumed += 1
        if resumed:
            log.info("resuming unfinished requests", extra={"count": resumed, "delay_s": delay})
        return resumed
