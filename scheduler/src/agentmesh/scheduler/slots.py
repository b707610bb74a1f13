"""Worker slots: the queues subtasks wait in, and who gets a free slot.

A subtask waits in the queue of its capability and tier until a worker of
that tier has a free slot (the scheduler never sends a worker more than
its capacity). Whenever a slot frees, a worker joins, or a subtask
arrives, `pump` hands queue heads to workers chosen by the balancing
policy, or keeps them waiting when the policy says a busy worker would
finish them sooner.

Two waits are bounded by a grace (`worker_wait`) within the deadline: a
subtask for a capability no live worker offers waits for one to register
(`wait_for_worker`); and a subtask that prefers a worker (the one that had
it before a restart, and answers from its store) waits for that worker to
register or free a slot before it goes to the queue like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agentmesh.errors import DeadlineExceeded
from agentmesh.scheduler import tiers
from agentmesh.scheduler.calls import DispatchObserver, SubtaskCall
from agentmesh.scheduler.policies import Policy
from agentmesh.scheduler.queues import CRITICAL_PATH, CapabilityQueue, check_order
from agentmesh.scheduler.registry import Registry, WorkerRecord
from agentmesh.server.clock import Clock


@dataclass(eq=False)
class _Ticket:
    """A subtask waiting in a queue for a worker."""

    call: SubtaskCall
    avoid: frozenset[str]
    granted: asyncio.Future[WorkerRecord]
    #: It was not granted a slot when it arrived: it waited behind others.
    waited: bool = False


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
        worker_wait: float = 0.0,
        queue_order: str = CRITICAL_PATH,
        hopeless: Callable[[SubtaskCall, float], str] | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.clock = clock
        self.observer = observer
        self.queue_bound = queue_bound
        self.aging = aging
        #: Longest a subtask waits for a worker to register, or for its preferred worker.
        self.worker_wait = worker_wait
        #: How a queue orders a priority class: CRITICAL_PATH (least slack) or DEADLINE.
        self.queue_order = check_order(queue_order)
        #: Why a subtask that waited can no longer finish in time ("" when it can); None
        #: keeps every subtask until its deadline.
        self.hopeless = hopeless
        # Per tier, so that work waiting for a busy tier does not hold up work for another.
        self._queues: dict[str, dict[int, CapabilityQueue[_Ticket]]] = {}
        # Subtasks waiting for their preferred worker, by its id, in arrival order.
        self._preferring: dict[str, list[_Ticket]] = {}
        # Subtasks waiting for a worker of their capability to register, with the time each
        # began to wait (the autoscaler counts them: see `joining`).
        self._joining: dict[str, dict[asyncio.Future[None], float]] = {}
        # Capabilities with subtasks queued (or that had some: `pump` prunes), so that a
        # freed slot pumps only these rather than every capability of its worker.
        self._backlog: set[str] = set()

    def queue(self, capability: str, tier: int) -> CapabilityQueue[_Ticket]:
        by_tier = self._queues.setdefault(capability, {})
        queue = by_tier.get(tier)
        if queue is None:
            queue = by_tier[tier] = CapabilityQueue(
                capability, self.queue_bound, self.aging, self.queue_order
            )
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

    def least_slacks(self) -> dict[str, float]:
        """The least slack of a waiting subtask, by capability (all tiers); capabilities
        with nothing waiting are left out."""
        now = self.clock.now()
        slacks: dict[str, float] = {}
        for capability, qs in self._queues.items():
            least = min(
                (s for q in qs.values() if (s := q.least_slack(now)) is not None), default=None
            )
            if least is not None:
                slacks[capability] = least
        return slacks

    def waiting(self, capability: str, tier: int | None = None) -> tuple[int, float]:
        """How many subtasks of the capability wait in its queue of the tier (every tier for
        None), and the longest any has waited (0 when none)."""
        now = self.clock.now()
        by_tier = self._queues.get(capability, {})
        queues = [q for t, q in by_tier.items() if tier is None or t == tier]
        return sum(len(q) for q in queues), max((q.oldest_age(now) for q in queues), default=0.0)

    def joining(self, capability: str) -> tuple[int, float]:
        """How many subtasks of the capability wait for a worker offering it to register (no
        live worker does), and the longest any has waited (0 when none)."""
        now = self.clock.now()
        since = self._joining.get(capability, {}).values()
        return len(since), max((now - t for t in since), default=0.0)

    def capabilities_waiting(self) -> set[str]:
        """The capabilities with a queue, or with subtasks waiting for a worker to register."""
        return set(self._queues) | set(self._joining)

    def has_room(self, capability: str, subtasks: int) -> bool:
        """Whether a capability's queues can take this many more subtasks."""
        depth = sum(len(q) for q in self._queues.get(capability, {}).values())
        return depth + subtasks <= self.queue_bound

    async def acquire(self, call: SubtaskCall, tier: int, avoid: frozenset[str]) -> WorkerRecord:
        """Wait in the tier's queue until a worker slot is granted; bounded by the deadline.

        The granted worker's in-flight count already includes the subtask.
        A subtask that prefers a worker first waits for it (see `_acquire_preferred`).
        """
        now = self.clock.now()
        if call.deadline <= now:
            raise DeadlineExceeded(
                f"the deadline passed before subtask {call.subtask_id!r} started"
            )
        if call.prefer and call.prefer not in avoid and self.worker_wait > 0:
            preferred = await self._acquire_preferred(call, avoid)
            if preferred is not None:
                self.observer.queue_waited(call.capability, self.clock.now() - now)
                return preferred
            now = self.clock.now()
        queue = self.queue(call.capability, tier)
        ticket = _Ticket(call, avoid, asyncio.get_running_loop().create_future())
        entry = queue.push(
            ticket,
            priority=call.priority,
            deadline=call.deadline,
            now=now,
            critical_path=call.critical_path,
        )
        self._backlog.add(call.capability)
        self.pump(call.capability)
        granted = ticket.granted
        ticket.waited = not granted.done()
        worker: WorkerRecord | None = None
        try:
            if granted.done():  # a free slot at once: no wait, no timer
                worker = granted.result()
            else:
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
            elif worker is None:
                self._hand_back(granted)

    async def _acquire_preferred(
        self, call: SubtaskCall, avoid: frozenset[str]
    ) -> WorkerRecord | None:
        """The preferred worker's slot, if it registers or frees one within the grace; None
        when it does not, or cannot take the subtask (draining, other capabilities)."""
        known = self.registry.get(call.prefer)
        if known is not None and (known.draining or call.capability not in known.spec.capabilities):
            return None
        ticket = _Ticket(call, avoid, asyncio.get_running_loop().create_future())
        waiting = self._preferring.setdefault(call.prefer, [])
        waiting.append(ticket)
        granted = ticket.granted
        worker: WorkerRecord | None = None
        try:
            self._grant_preferred(call.prefer)
            until = min(call.deadline, self.clock.now() + self.worker_wait)
            if await self._wait(granted, until):
                worker = granted.result()
            return worker
        finally:
            if ticket in waiting:
                waiting.remove(ticket)
            if not waiting and self._preferring.get(call.prefer) is waiting:
                del self._preferring[call.prefer]
            if not granted.done():
                granted.cancel()
            elif worker is None:
                self._hand_back(granted)

    def _grant_preferred(self, worker_id: str) -> None:
        """Give the worker's free slots to the subtasks waiting for it, first come first."""
        worker = self.registry.get(worker_id)
        waiting = self._preferring.get(worker_id)
        if worker is None or not waiting:
            return
        now = self.clock.now()
        for ticket in list(waiting):
            if not worker.available or worker.ejected_until > now:
                return
            if ticket.granted.done() or ticket.call.capability not in worker.spec.capabilities:
                continue
            waiting.remove(ticket)
            worker.in_flight += 1
            ticket.granted.set_result(worker)

    def _hand_back(self, granted: asyncio.Future[WorkerRecord]) -> None:
        """A slot was granted to a waiter that is leaving: give it back."""
        if granted.cancelled() or granted.exception() is not None:
            return
        left = granted.result()
        left.in_flight = max(left.in_flight - 1, 0)
        self.serve(left)

    async def wait_for_worker(self, capability: str, until: float) -> bool:
        """Wait until a worker offering the capability joins or changes (True), or the
        clock reaches `until` (False). The caller checks again what it needs."""
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._joining.setdefault(capability, {})
        waiters[joined] = self.clock.now()
        try:
            return await self._wait(joined, until)
        finally:
            waiters.pop(joined, None)
            if not waiters and self._joining.get(capability) is waiters:
                del self._joining[capability]

    def serve(self, worker: WorkerRecord) -> None:
        """A worker joined, freed a slot, or changed: wake what waits for it or for one of
        its capabilities, and hand its free slots to queued subtasks."""
        capabilities = worker.spec.capabilities
        if self._joining:
            for capability in capabilities & self._joining.keys():
                self.worker_joined(capability)
        if worker.worker_id in self._preferring:
            self._grant_preferred(worker.worker_id)
        backlog = capabilities & self._backlog
        order: Iterable[str] = backlog
        if len(backlog) > 1:
            # Its capabilities' queues are served most urgent head first (aged class, then
            # slack or deadline, as inside one queue), so that a freed slot goes to it.
            order = sorted(backlog, key=self._urgency(tiers.rank(worker.spec.tier)))
        for capability in order:
            self.pump(capability)

    def _urgency(self, tier: int) -> Callable[[str], tuple[float, float]]:
        """A sort key of capabilities: how urgent the head of their queue of the tier is."""
        now = self.clock.now()
        last = (float("inf"), float("inf"))

        def urgency(capability: str) -> tuple[float, float]:
            queue = self._queues.get(capability, {}).get(tier)
            head = None if queue is None else queue.urgency(now)
            return last if head is None else head

        return urgency

    def worker_joined(self, capability: str) -> None:
        """Wake every subtask waiting for a worker of the capability."""
        for joined in self._joining.pop(capability, ()):
            if not joined.done():
                joined.set_result(None)

    async def _wait(self, future: asyncio.Future[Any], until: float) -> bool:
        """Wait for the future until the clock reaches `until`; whether it is done."""
        remaining = until - self.clock.now()
        if future.done() or remaining <= 0:
            return future.done()
        timer = asyncio.ensure_future(self.clock.sleep(remaining))
        try:
            await asyncio.wait((future, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return future.done()

    def pump(self, capability: str) -> None:
        """Hand queue heads to free workers of their tier, as long as both remain.

        Subtasks waiting for a particular worker get its free slots first.
        """
        now = self.clock.now()
        if self._preferring:
            for w in self.registry.offering(capability):
                if w.worker_id in self._preferring:
                    self._grant_preferred(w.worker_id)
        by_tier = self._queues.get(capability, {})
        for tier, queue in by_tier.items():
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
                if ticket.waited and self.hopeless is not None:
                    why = self.hopeless(ticket.call, now)
                    if why:
                        # Its slot goes to work that can still finish in time.
                        queue.pop(now)
                        self.observer.shed(ticket.call.capability)
                        ticket.granted.set_exception(
                            DeadlineExceeded(why, reason="DEADLINE_UNREACHABLE")
                        )
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
        if not any(len(queue) for queue in by_tier.values()):
            self._backlog.discard(capability)

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
