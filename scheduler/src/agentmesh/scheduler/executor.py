"""Run a plan's DAG: independent steps in parallel, dependents fed with results.

Every step is a task that waits for the steps it depends on, checks its
condition, binds its input, and hands the subtask to the dispatcher. A
required step that fails fails the request and cancels the rest; an
optional one is recorded as skipped or failed and the request goes on.
When every step has finished, the answer is bound from their outputs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from agentmesh.errors import AgentmeshError, Cancelled, FieldViolation
from agentmesh.scheduler import contracts, fragments
from agentmesh.scheduler.calls import (
    FAILED,
    RETRIED,
    SKIPPED,
    STARTED,
    SUCCEEDED,
    Earlier,
    EventSink,
    Follower,
    Outcome,
    SubtaskCall,
    SubtaskEvent,
)
from agentmesh.scheduler.critical_path import remaining_critical_path
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.plans import (
    Step,
    condition_holds,
    resolve_bindings,
    step_priority,
)
from agentmesh.scheduler.records import (
    ErrorRecord,
    Journal,
    RequestRecord,
    SubtaskRecord,
)
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.scheduler.states import FINISHED, RequestState, SubtaskState
from agentmesh.usage import Usage

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """One execution of a request's plan: what its steps share."""

    record: RequestRecord
    deadline: float
    on_event: EventSink
    #: Outputs of the steps that succeeded, by step id.
    outputs: dict[str, Any]
    #: Set when a step has its final state (or will not run).
    done: dict[str, asyncio.Event]
    optional: frozenset[str]
    #: Whether steps may take followers (offload not off, no budget).
    offload: bool = False
    #: Each step's dependents, found on the first claim.
    following: dict[str, tuple[str, ...]] | None = None
    #: Steps sent to a worker with an earlier step of their fragment, by id.
    claimed: dict[str, Follower] = field(default_factory=dict)


class Executor:
    """Runs plans through a dispatcher, journalling every subtask transition."""

    def __init__(self, dispatcher: Dispatcher, journal: Journal | None = None) -> None:
        self.dispatcher = dispatcher
        self.journal = journal

    def _save(self, record: RequestRecord, subtask: SubtaskRecord) -> None:
        if self.journal is not None:
            self.journal.save_subtask(record.key, subtask)

    async def execute(self, record: RequestRecord, deadline: float, on_event: EventSink) -> None:
        """Run every step of the record's plan and fill in the outcome.

        Never raises for a failed request: the failure is recorded in the
        record. Raises CancelledError when the caller cancels, after
        recording the cancellation. Steps already finished (a request
        resumed after a restart) are not run again.
        """
        run = _Run(
            record,
            deadline,
            on_event,
            outputs={
                s.id: s.output
                for s in record.subtasks.values()
                if s.state == SubtaskState.SUCCEEDED
            },
            done={s.id: asyncio.Event() for s in record.plan.steps},
            optional=frozenset(s.id for s in record.plan.steps if s.optional),
        )
        # A budget is reserved attempt by attempt, before each: no fragments then.
        run.offload = self.dispatcher.offload.mode != fragments.OFF and record.budget is None
        tasks = [
            asyncio.create_task(self._run_step(run, step), name=f"{record.key}/{step.id}")
            for step in record.plan.steps
        ]
        answer: dict[str, Any] | None = None
        error: ErrorRecord | None = None
        try:
            await _first_failure(tasks)
            answer = resolve_bindings(record.plan.answer, record.input, run.outputs)
        except AgentmeshError as failure:
            error = ErrorRecord.of(failure)
        except asyncio.CancelledError:
            error = ErrorRecord("CANCELLED", "the request was cancelled")
            raise
        except Exception as bug:
            log.exception("request failed on an unexpected error")
            error = ErrorRecord("INTERNAL", f"internal error: {type(bug).__name__}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The outcome is set once every step has its final state, so that
            # nobody sees a finished request with a step still running.
            if error is not None:
                self.cancel_unfinished(record, f"not run to the end: {error.message}")
            record.answer = answer
            record.error = error
            record.state = (
                RequestState.SUCCEEDED
                if error is None
                else RequestState.CANCELLED
                if error.code == "CANCELLED"
                else RequestState.FAILED
            )

    def cancel_unfinished(self, record: RequestRecord, reason: str) -> None:
        """Give every step that has not finished the final state CANCELLED, with the reason."""
        for subtask in record.subtasks.values():
            if subtask.state in (SubtaskState.PENDING, SubtaskState.QUEUED, SubtaskState.RUNNING):
                subtask.state = SubtaskState.CANCELLED
                subtask.reason = reason
                self._save(record, subtask)

    async def _run_step(self, run: _Run, step: Step) -> None:
        record = run.record
        subtask = record.subtasks[step.id]
        required_deps = [dep for dep in step.depends_on if dep not in run.optional]
        try:
            if subtask.state in FINISHED:
                return  # finished before a restart
            for dep in step.depends_on:
                await run.done[dep].wait()
            if any(record.subtasks[dep].state is SubtaskState.FAILED for dep in required_deps):
                # The request fails on that step: this one is not tried with its input
                # missing (it would fail its own check and hide the cause).
                return
            follower = run.claimed.get(step.id)
            earlier = None
            if follower is not None:
                earlier = await self._follow(run, step, subtask, follower)
                if earlier is None:
                    return
            if step.when is not None and not condition_holds(step.when, record.input, run.outputs):
                self._skip(
                    record, subtask, f"its condition on {step.when.ref} does not hold", run.on_event
                )
                return
            if step.optional and not self.dispatcher.has_live_worker(step.capability):
                self._skip(
                    record,
                    subtask,
                    f"no worker offers capability {step.capability!r}",
                    run.on_event,
                )
                return
            await self._dispatch(run, step, subtask, earlier)
        finally:
            claimed = run.claimed.pop(step.id, None)
            if claimed is not None:
                self.dispatcher.attempts.drop(claimed)
            run.done[step.id].set()

    async def _dispatch(
        self, run: _Run, step: Step, subtask: SubtaskRecord, earlier: Earlier | None = None
    ) -> None:
        record = run.record
        clock = self.dispatcher.clock
        data = resolve_bindings(step.inputs, record.input, run.outputs)
        call = _call(
            run,
            step,
            data,
            budget=record.budget,
            # After a restart, the worker that had the subtask answers it
            # from its store instead of running it again.
            prefer=subtask.worker_id,
            fragment=functools.partial(self._claim, run, step) if run.offload else None,
            earlier=earlier,
            critical_path=remaining_critical_path(
                record.plan, step.id, self.dispatcher.latencies.estimate
            ),
        )

        def follow(event: SubtaskEvent) -> None:
            subtask.state = SubtaskState.RUNNING
            subtask.worker_id = event.worker_id
            subtask.attempts = event.attempt
            self._save(record, subtask)
            run.on_event(event)

        subtask.state = SubtaskState.QUEUED
        if subtask.started_at is None or earlier is None:
            subtask.started_at = clock.now()
        subtask.fragment = ""
        try:
            if not contracts.checked_at_admission(step):
                contract = contracts.contract_of(self.dispatcher.registry, step.capability)
                contracts.check_input(contract, data, "input", "its input")
            outcome = await self.dispatcher.run(call, follow)
        except AgentmeshError as error:
            subtask.state = SubtaskState.FAILED
            subtask.error = ErrorRecord.of(error)
            subtask.reason = error.message
            subtask.duration = clock.now() - subtask.started_at
            self._save(record, subtask)
            self.dispatcher.observer.subtask_finished(
                step.capability, None, SubtaskState.FAILED, Usage(), ""
            )
            run.on_event(
                SubtaskEvent(
                    FAILED,
                    step.id,
                    step.capability,
                    subtask.worker_id,
                    subtask.attempts,
                    f"{error.code_name}: {error.message}",
                )
            )
            if not step.optional:
                raise _step_failure(step, error, subtask.attempts) from error
            return
        self._succeeded(run, step, subtask, outcome)

    def _succeeded(self, run: _Run, step: Step, subtask: SubtaskRecord, outcome: Outcome) -> None:
        result = outcome.result
        self.dispatcher.observer.subtask_finished(
            step.capability, outcome.tier, SubtaskState.SUCCEEDED, result.usage, result.model
        )
        subtask.state = SubtaskState.SUCCEEDED
        subtask.output = result.output
        subtask.worker_id = outcome.worker_id
        subtask.attempts = outcome.attempts
        subtask.model = result.model
        subtask.tier = outcome.tier
        subtask.usage = result.usage
        assert subtask.started_at is not None
        subtask.duration = self.dispatcher.clock.now() - subtask.started_at
        run.outputs[step.id] = result.output
        self._save(run.record, subtask)
        run.on_event(
            SubtaskEvent(SUCCEEDED, step.id, step.capability, outcome.worker_id, outcome.attempts)
        )

    # -- offload ------------------------------------------------------------------------

    def _claim(self, run: _Run, head: Step, worker: WorkerRecord, room: int) -> list[Follower]:
        """The steps that follow `head` to `worker` in one fragment (see `fragments`), each
        running there from now (in the record and its events; the store gets its outcome)."""
        record = run.record
        if run.following is None:
            run.following = fragments.dependents(record.plan)
        if not run.following[head.id]:
            return []
        fits: dict[tuple[str, int], bool] = {}

        def can_follow(step: Step) -> bool:
            if (
                step.optional
                or step.when is not None
                or step.id in run.claimed
                or record.subtasks[step.id].state is not SubtaskState.PENDING
            ):
                return False
            key = (step.capability, step.difficulty)
            if key not in fits:
                fits[key] = self.dispatcher.fits(worker, step.capability, step.difficulty)
            return fits[key]

        def settled(dep: str) -> bool:
            state = record.subtasks[dep].state
            return state is SubtaskState.SUCCEEDED or (dep in run.optional and state in FINISHED)

        steps = fragments.select(
            record.plan, head.id, run.following, can_follow=can_follow, settled=settled, limit=room
        )
        if not steps:
            return []
        members = {head.id, *(s.id for s in steps)}
        loop = asyncio.get_running_loop()
        now = self.dispatcher.clock.now()
        record.subtasks[head.id].fragment = head.id
        followers = []
        for step in steps:
            data, wiring = fragments.wire(step, members, record.input, run.outputs)
            after = tuple(d for d in step.depends_on if d in members)
            follower = Follower(
                _call(run, step, data), head.id, after, wiring, loop.create_future()
            )
            run.claimed[step.id] = follower
            followers.append(follower)
            subtask = record.subtasks[step.id]
            subtask.state = SubtaskState.RUNNING
            subtask.worker_id = worker.worker_id
            subtask.attempts = follower.attempt
            subtask.fragment = head.id
            subtask.started_at = now
            # Not written: the store gets its outcome (a restarted scheduler runs a step
            # with no row again, as it would any step that had not started).
            run.on_event(
                SubtaskEvent(STARTED, step.id, step.capability, worker.worker_id, follower.attempt)
            )
        return followers

    async def _follow(
        self, run: _Run, step: Step, subtask: SubtaskRecord, follower: Follower
    ) -> Earlier | None:
        """Take a claimed step's result from its fragment: None when it succeeded there;
        otherwise the attempt to go on from (the fragment broke before it, or it failed),
        dispatching it on its own."""
        assert follower.worker is not None
        try:
            outcome = await self.dispatcher.attempts.follow(follower)
        except AgentmeshError as error:
            self.dispatcher.observer.retried(step.capability, error.code_name)
            run.on_event(
                SubtaskEvent(
                    RETRIED,
                    step.id,
                    step.capability,
                    subtask.worker_id,
                    follower.attempt,
                    f"{error.code_name}: {error.message}",
                )
            )
            return Earlier(follower.worker, follower.attempt, error)
        self._succeeded(run, step, subtask, outcome)
        return None

    def _skip(
        self, record: RequestRecord, subtask: SubtaskRecord, reason: str, on_event: EventSink
    ) -> None:
        self.dispatcher.observer.subtask_finished(
            subtask.capability, None, SubtaskState.SKIPPED, Usage(), ""
        )
        subtask.state = SubtaskState.SKIPPED
        subtask.reason = reason
        self._save(record, subtask)
        on_event(SubtaskEvent(SKIPPED, subtask.id, subtask.capability, message=reason))


def _call(run: _Run, step: Step, data: dict[str, Any], **more: Any) -> SubtaskCall:
    """The subtask a step of this run sends to a worker, with its input bound."""
    return SubtaskCall(
        request_id=run.record.request_id,
        tenant=run.record.tenant,
        subtask_id=step.id,
        capability=step.capability,
        input=data,
        priority=step_priority(step.priority, run.record.priority),
        difficulty=step.difficulty,
        deadline=run.deadline,
        **more,
    )


def _step_failure(step: Step, error: AgentmeshError, attempts: int) -> AgentmeshError:
    """The request's error for a required step that failed: its code, and which step."""
    violations = tuple(
        FieldViolation(f"steps.{step.id}.{v.field}", v.description)
        for v in getattr(error, "violations", ())
    )
    failure = ErrorRecord(
        error.code_name,
        f"step {step.id!r} ({step.capability}) failed after {attempts} attempt(s): {error.message}",
        error.reason or "SUBTASK_FAILED",
        error.metadata,
        violations,
    ).to_error(step=step.id, capability=step.capability)
    return failure


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; raise the first exception as soon as one fails."""
    pending = set(tasks)
    while pending:
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in finished:
            if task.cancelled():
                raise Cancelled("a step was cancelled")
            error = task.exception()
            if error is not None:
                raise error
