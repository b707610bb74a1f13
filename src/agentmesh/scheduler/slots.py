"""Worker slots: the queues subtasks wait in, and who gets a free slot.

A subtask waits in the queue of its capability and tier until a worker of
that tier has a free slot (the scheduler never sends a worker more than
its capacity). Whenever a slot frees, a worker joins, or a subtask
arrives, `pump` hands queue heads to workers chosen by the balancing
policy, or keeps them waiting when the policy says a busy worker would
finish them sooner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agentmesh.clock import Clock
from agentmesh.errors import DeadlineExceeded
from agentmesh.scheduler import tiers
from agentmesh.scheduler.calls import DispatchObserver, SubtaskCall
from agentmesh.scheduler.policies import Policy
from agentmesh.scheduler.queues import CapabilityQueue
from agentmesh.scheduler.registry import Registry, WorkerRecord


@dataclass(eq=False)
class _Ticket:
    """A subtask waiting in a queue for a worker."""

    call: SubtaskCall
    avoid: frozenset[str]
    granted: asyncio.Future[WorkerRecord]


class TierGone(Exception):
    """Every worker of the tier a subtask waited for left; it chooses a tier again."""


class Slots:
    """One bounded queue per (capability, tier), served as slots free up."""

    def __init__(
        self,
        registry: Registry,
        policy: Policy,
        clock: Clock,
        observer: DispatchObserver,
        *,
        queue_bound: int,
        aging: float,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.observer = observer
        self.queue_bound = queue_bound
        self.aging = aging
        # Per tier, so that work waiting for a busy tier does not hold up work for another.
        self._queues: dict[str, dict[int, CapabilityQueue[_Ticket]]] = {}

    def queue(self, capability: str, tier: int) -> CapabilityQueue[_Ticket]:
        by_tier = self._queues.setdefault(capability, {})
        queue = by_tier.get(tier)
        if queue is None:
            queue = by_tier[tier] = CapabilityQueue(capability, self.queue_bound, self.aging)
        return queue

    def queue_depths(self) -> dict[str, int]:
        """Subtasks waiting, by capability (all tiers)."""
        return {c: sum(len(q) for q in qs.values()) for c, qs in self._queues.items()}

    def oldest_ages(self) -> dict[str, float]:
        now = self.clock.now()
        return {
            c: max((q.oldest_age(now) for q in qs.values()), default=0.0)
            for c, qs in self._queues.items()
        }

    def has_room(self, capability: str, subtasks: int) -> bool:
        """Whether a capability's queues can take this many more subtasks."""
        return self.queue_depths().get(capability, 0) + subtasks <= self.queue_bound

    async def acquire(self, call: SubtaskCall, tier: int, avoid: frozenset[str]) -> WorkerRecord:
        """Wait in the tier's queue until a worker slot is granted; bounded by the deadline.

        The granted worker's in-flight count already includes the subtask.
        """
        now = self.clock.now()
        if call.deadline <= now:
            raise DeadlineExceeded(
                f"the deadline passed before subtask {call.subtask_id!r} started"
            )
        queue = self.queue(call.capability, tier)
        ticket = _Ticket(call, avoid, asyncio.get_running_loop().create_future())
        entry = queue.push(ticket, priority=call.priority, deadline=call.deadline, now=now)
        self.pump(call.capability)
        granted = ticket.granted
        worker: WorkerRecord | None = None
        try:
            worker = await asyncio.wait_for(asyncio.shield(granted), call.deadline - now)
            self.observer.queue_waited(call.capability, self.clock.now() - now)
            return worker
        except TimeoutError:
            raise DeadlineExceeded(
                f"subtask {call.subtask_id!r} waited for a {call.capability!r} worker "
                "until its deadline"
            ) from None
        finally:
            queue.remove(entry)
            if not granted.done():
                granted.cancel()
            elif worker is None and not granted.cancelled() and granted.exception() is None:
                # A slot was granted to a waiter that is leaving: hand it back.
                left = granted.result()
                left.in_flight = max(left.in_flight - 1, 0)
                for capability in left.spec.capabilities:
                    self.pump(capability)

    def pump(self, capability: str) -> None:
        """Hand queue heads to free workers of their tier, as long as both remain."""
        now = self.clock.now()
        for tier, queue in self._queues.get(capability, {}).items():
            while len(queue):
                free = [
                    w
                    for w in self.registry.offering(capability)
                    if w.available and w.ejected_until <= now and tiers.rank(w.spec.tier) == tier
                ]
                if not free:
                    break
                ticket = queue.peek(now)
                if ticket is None:
                    break
                if ticket.granted.done():
                    queue.pop(now)
                    continue
                preferred = (
                    [w for w in free if w.worker_id == ticket.call.prefer]
                    or [w for w in free if w.worker_id not in ticket.avoid]
                    or free
                )
                worker = self.policy.pick(preferred, now)
                busy = [
                    w
                    for w in self.registry.offering(capability)
                    if not w.available
                    and not w.draining
                    and w.ejected_until <= now
                    and tiers.rank(w.spec.tier) == tier
                ]
                if self.policy.worth_waiting(worker, busy, len(queue), now):
                    break  # a slot on a faster worker frees sooner than this one would finish
                queue.pop(now)
                worker.in_flight += 1
                ticket.granted.set_result(worker)

    def fail_orphans(self, capability: str) -> None:
        """Send the waiters of a tier that no live worker serves any more to choose again."""
        live = {
            tiers.rank(w.spec.tier) for w in self.registry.offering(capability) if not w.draining
        }
        for tier, queue in self._queues.get(capability, {}).items():
            if tier in live:
                continue
            while (ticket := queue.pop(self.clock.now())) is not None:
                if not ticket.granted.done():
                    ticket.granted.set_exception(TierGone())
