"""Run one subtask on the best worker, with queueing and retries.

A subtask waits for a worker slot of its tier (`slots`), runs there
(`attempts`, which may send the steps that follow it along when offload
is on), and is raced by a hedge when it runs slow (`hedging`). A failed attempt is retried on
another worker after a jittered backoff when its error is retryable and the
deadline leaves room. An evicted worker's attempts are cancelled and go
back to the queue at once. When no live worker offers the capability (in
a tier that can serve it), the subtask waits up to `worker_wait` for one
to register before it fails with UNAVAILABLE.

Nothing here knows gRPC: workers are reached through a `WorkerTransport`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from agentmesh.errors import AgentmeshError, ResourceExhausted, Unavailable
from agentmesh.scheduler import tiers
from agentmesh.scheduler.attempts import Attempts, Evicted
from agentmesh.scheduler.calls import (
    RETRIED,
    STARTED,
    DispatchObserver,
    EventSink,
    ExecuteResult,
    NullObserver,
    Outcome,
    SubtaskCall,
    SubtaskEvent,
    WorkerTransport,
    ignore_events,
)
from agentmesh.scheduler.critical_path import CapabilityLatencies
from agentmesh.scheduler.fragments import OFF, Offload
from agentmesh.scheduler.hedging import HedgePolicy, Hedger
from agentmesh.scheduler.load import TokenBucket
from agentmesh.scheduler.outliers import OutlierDetector, OutlierPolicy
from agentmesh.scheduler.policies import Policy
from agentmesh.scheduler.queues import CRITICAL_PATH
from agentmesh.scheduler.registry import Registry, WorkerRecord
from agentmesh.scheduler.retry import RetryPolicy
from agentmesh.scheduler.slots import Slots, TierGone
from agentmesh.server.clock import Clock
from agentmesh.tiers import Difficulty

log = logging.getLogger(__name__)


class Dispatcher:
    """Queues subtasks per capability and runs each on a chosen worker."""

    def __init__(
        self,
        registry: Registry,
        transport: WorkerTransport,
        policy: Policy,
        *,
        retry: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        queue_bound: int,
        aging: float,
        attempt_timeout: float,
        observer: DispatchObserver | None = None,
        hedge: HedgePolicy | None = None,
        outliers: OutlierPolicy | None = None,
        worker_wait: float = 0.0,
        offload: Offload | None = None,
        queue_order: str = CRITICAL_PATH,
        shed_late: bool = False,
    ) -> None:
        self.registry = registry
        self.transport = transport
        self.retry = retry
        self.clock = clock
        self.rng = rng
        self.observer = observer or NullObserver()
        #: Longest a subtask waits for a worker of its capability (or its preferred
        #: worker) to register, within its deadline.
        self.worker_wait = worker_wait
        #: When a granted slot's step takes the steps that follow it along (`fragments`).
        self.offload = offload or Offload(OFF)
        #: Awaited after an attempt's STARTED event, before the worker is called, with the
        #: call's deadline: with a store several schedulers share, the commit of that
        #: event (the worker it goes to), so that a replica taking the request over sends
        #: the subtask to the same worker, which answers from its store rather than
        #: running it twice. None: not waited for.
        self.before_send: Callable[[float], Awaitable[object]] | None = None
        #: Each capability's typical attempt latency, for the critical paths of plans.
        self.latencies = CapabilityLatencies(registry.initial_latency)
        self.slots = Slots(
            registry,
            policy,
            clock,
            self.observer,
            queue_bound=queue_bound,
            aging=aging,
            worker_wait=worker_wait,
            queue_order=queue_order,
            hopeless=self._hopeless if shed_late else None,
        )
        self.hedger = Hedger(hedge or HedgePolicy(), self.observer)
        self.outliers = OutlierDetector(outliers or OutlierPolicy(), registry)
        self.attempts = Attempts(
            registry,
            transport,
            clock,
            self.observer,
            self.hedger,
            self.outliers,
            self.offload,
            attempt_timeout,
            freed=self.workers_changed,
            latencies=self.latencies,
        )
        self._retries = TokenBucket(retry.budget, retry.budget_reserve)

    # -- membership -----------------------------------------------------------

    def workers_changed(self, worker: WorkerRecord) -> None:
        """A worker joined, freed a slot, or changed its capacity: serve its queues."""
        self.slots.serve(worker)

    async def evict(self, worker_id: str, reason: str) -> WorkerRecord | None:
        """Remove a worker and send its in-flight subtasks back to the queue."""
        record = self.registry.remove(worker_id)
        if record is not None:
            self.observer.worker_evicted(reason)
            if record.draining and reason == "stream_closed":
                await self.attempts.let_answer(worker_id)
        self.attempts.cancel(worker_id)
        if self.registry.get(worker_id) is None:  # not registered again meanwhile
            await self.transport.forget(worker_id)
        if record is not None:
            for capability in record.spec.capabilities:
                # Subtasks queued only for this worker's tier may now have none; and
                # subtasks that waited for it rather than use a slower free worker
                # must not wait any longer.
                self.slots.fail_orphans(capability)
                self.slots.pump(capability)
        return record

    # -- running subtasks -----------------------------------------------------

    async def run(self, call: SubtaskCall, on_event: EventSink = ignore_events) -> Outcome:
        """Run a subtask to a result, or raise the error that ended it."""
        avoid: set[str] = set()
        # A call that sets no difficulty takes the one its skill declares.
        skill = self.registry.skill(call.capability)
        difficulty = call.difficulty or (skill.difficulty if skill else call.difficulty)
        minimum: int = tiers.min_tier(difficulty)
        attempt = 0
        if call.earlier is not None:
            attempt = call.earlier.attempt
            avoid.add(call.earlier.worker.worker_id)
            minimum = _minimum_after(call.earlier.worker, call.earlier.error, minimum)
        while True:
            attempt += 1
            tier, reserved = await self._wait_for_tier(call, minimum)
            try:
                worker = await self.slots.acquire(call, tier, frozenset(avoid))
            except TierGone:
                # Every worker of that tier left while we waited: choose again.
                attempt -= 1
                self._settle(call, reserved, 0.0)
                continue
            except BaseException:
                self._settle(call, reserved, 0.0)
                raise
            on_event(
                SubtaskEvent(STARTED, call.subtask_id, call.capability, worker.worker_id, attempt)
            )
            if attempt == 1:
                self._retries.deposit()
            settled = False
            try:
                if self.before_send is not None:
                    await self.before_send(call.deadline)
                winner, result = await self._attempt_hedged(worker, call, attempt, tier, avoid)
                self._settle(call, reserved, result.usage.cost_usd)
                settled = True
                return Outcome(result, winner.worker_id, attempt, winner.spec.tier)
            except Evicted:
                error: AgentmeshError = Unavailable(
                    f"worker {worker.worker_id} left the mesh during the subtask",
                    reason="WORKER_EVICTED",
                )
                backoff = 0.0
            except AgentmeshError as failure:
                error = failure
                # Full jitter, but never sooner than a worker's RetryInfo asks.
                backoff = self.retry.backoff(attempt, self.rng)
                if isinstance(failure, ResourceExhausted):
                    backoff = max(backoff, failure.retry_after)
                minimum = _minimum_after(worker, failure, minimum)
            finally:
                if not settled:
                    # A failed attempt's tokens are not reported back: it is charged nothing.
                    self._settle(call, reserved, 0.0)
            avoid.add(worker.worker_id)
            remaining = call.deadline - self.clock.now()
            if not error.retryable or attempt >= self.retry.max_attempts or remaining <= backoff:
                raise error
            # An evicted worker's subtask goes back to the queue whatever the
            # budget: it is lost work, not a retry a sick worker provoked.
            if error.reason != "WORKER_EVICTED" and not self._retries.withdraw():
                self.observer.retry_refused(call.capability)
                raise error
            self.observer.retried(call.capability, error.code_name)
            on_event(
                SubtaskEvent(
                    RETRIED,
                    call.subtask_id,
                    call.capability,
                    worker.worker_id,
                    attempt,
                    f"{error.code_name}: {error.message}",
                )
            )
            if backoff > 0:
                await self.clock.sleep(backoff)

    async def _attempt_hedged(
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        tier: int,
        avoid: set[str],
    ) -> tuple[WorkerRecord, ExecuteResult]:
        """An attempt, raced by a hedge on another free worker of the tier (see `hedging`)."""

        def run_on(target: WorkerRecord, hedge: bool) -> Awaitable[ExecuteResult]:
            if hedge:
                target.in_flight += 1  # the primary's slot was granted by the queue
            return self.attempts.run(target, call, attempt, hedge=hedge)

        def second() -> WorkerRecord | None:
            return self._hedge_worker(call.capability, tier, avoid | {worker.worker_id})

        return await self.hedger.race(call.capability, worker, run_on, second)

    def _hedge_worker(self, capability: str, tier: int, avoid: set[str]) -> WorkerRecord | None:
        """A free worker of the tier for a hedge; None otherwise.

        A hedge never jumps the queue: with subtasks waiting for the tier,
        none is sent.
        """
        if len(self.slots.queue(capability, tier)):
            return None
        now = self.clock.now()
        free = [
            w
            for w in self.registry.offering(capability)
            if w.available
            and w.ejected_until <= now
            and tiers.rank(w.spec.tier) == tier
            and w.worker_id not in avoid
        ]
        return self.slots.policy.pick(free, now) if free else None

    async def _wait_for_tier(self, call: SubtaskCall, minimum: int) -> tuple[int, float]:
        """`_choose_tier`, waiting up to `worker_wait` (within the deadline) for a worker
        of a tier that can serve the subtask to register when none is live."""
        give_up = min(call.deadline, self.clock.now() + self.worker_wait)
        while True:
            try:
                return self._choose_tier(call, minimum)
            except Unavailable:
                if not await self.slots.wait_for_worker(call.capability, give_up):
                    raise

    def _choose_tier(self, call: SubtaskCall, minimum: int) -> tuple[int, float]:
        """The tier for the next attempt, and what is reserved of the budget for it."""
        if call.budget is None:
            target = self._target_tier(call.capability, minimum)
            if target is None:
                raise _no_worker(call.capability)
            return target, 0.0
        live = self._live(call.capability)
        target = tiers.target_tier((w.spec.tier for w in live), minimum)
        if target is None:
            raise _no_worker(call.capability)
        return tiers.choose_within_budget(
            tiers.prices_by_tier(live), target, call.input, call.budget
        )

    def _target_tier(self, capability: str, minimum: int) -> int | None:
        """The cheapest live tier at or above `minimum` offering the capability (else the
        highest); None when no live worker offers it."""
        return tiers.target_tier((w.spec.tier for w in self._live(capability)), minimum)

    def _live(self, capability: str) -> list[WorkerRecord]:
        now = self.clock.now()
        return [
            w
            for w in self.registry.offering(capability)
            if not w.draining and w.ejected_until <= now
        ]

    @staticmethod
    def _settle(call: SubtaskCall, reserved: float, actual: float) -> None:
        if call.budget is not None:
            call.budget.settle(reserved, actual)

    def fits(self, worker: WorkerRecord, capability: str, difficulty: Difficulty) -> bool:
        """Whether a step may follow another to this worker: a simple one, that a dispatch
        of its own would send to a worker of this tier (so offload costs no more)."""
        if capability not in worker.spec.capabilities:
            return False
        skill = self.registry.skill(capability)
        difficulty = difficulty or (skill.difficulty if skill else difficulty)
        if difficulty == Difficulty.NUANCED:
            return False
        return self._target_tier(capability, tiers.min_tier(difficulty)) == tiers.rank(
            worker.spec.tier
        )

    def _hopeless(self, call: SubtaskCall, now: float) -> str:
        """Why a subtask that waited in its queue can no longer finish by its deadline, by
        the estimates (its own attempt, then the rest of its request's critical path); ""
        while it can."""
        left = call.deadline - now
        work = self.latencies.estimate(call.capability) + call.critical_path
        if work <= left:
            return ""
        return (
            f"subtask {call.subtask_id!r} ({call.capability}) waited for a worker until its "
            f"request can no longer finish by its deadline: about {work * 1000:.0f} ms of "
            f"work left, {max(left, 0.0) * 1000:.0f} ms to the deadline"
        )

    def has_live_worker(self, capability: str) -> bool:
        """Whether some worker that is not draining offers the capability."""
        return any(not w.draining for w in self.registry.offering(capability))


def _minimum_after(worker: WorkerRecord, error: AgentmeshError, minimum: int) -> int:
    """The lowest tier for the next attempt: the next tier up from a worker whose output
    failed validation."""
    if error.reason == "OUTPUT_INVALID":
        return tiers.rank(worker.spec.tier) + 1
    return minimum


def _no_worker(capability: str) -> Unavailable:
    return Unavailable(
        f"no healthy worker offers capability {capability!r}",
        reason="NO_WORKER",
        metadata={"capability": capability},
    )
