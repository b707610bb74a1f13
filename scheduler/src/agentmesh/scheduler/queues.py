"""Bounded per-capability priority queues with aging.

Within a priority class, entries leave least slack first, then by arrival
(order `critical_path`, the default): each entry's key is the latest time
it can finish and still let its request meet its deadline, its deadline
less the expected remaining critical path of its request after it
(`SubtaskCall.critical_path`). With order `deadline` the key is the deadline
alone: earliest-deadline-first. Across classes, the head of a lower class
gains one class for every `aging` seconds it has waited, so a steady stream
of urgent work delays but never starves the rest.

Why neither order can starve an entry inside its class: a key is an
absolute time, fixed when the entry is pushed, and never later than its
deadline. An entry with key `k` is passed only by entries whose key is
below `k`; one pushed at time `t` (with its deadline still ahead: a passed
one is refused) has a key of at least `t - P`, where `P` bounds a remaining
critical path (the plan's longest chain of steps times the largest latency
estimate, itself at most the slowest attempt seen or the default of
`critical_path.CapabilityLatencies`; 0 for EDF). So once the clock is past
`k + P`, nothing that arrives can pass it: the entries ahead of it are
finitely many, the queue is bounded, and each worker slot that frees takes
one of them. It also leaves at its deadline in any case, when the waiter
gives up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agentmesh.errors import ResourceExhausted

T = TypeVar("T")

#: Priority classes, lowest first (the values of agentmesh.v1.Priority).
LOW, NORMAL, HIGH, CRITICAL = 1, 2, 3, 4
PRIORITY_CLASSES = (LOW, NORMAL, HIGH, CRITICAL)

#: Orders within a class (AGENTMESH_QUEUE_ORDER): least slack first, or earliest deadline.
CRITICAL_PATH, DEADLINE = "critical_path", "deadline"
QUEUE_ORDERS = (CRITICAL_PATH, DEADLINE)


def check_order(order: str) -> str:
    """The queue order, checked; ValueError naming the choices otherwise."""
    if order not in QUEUE_ORDERS:
        raise ValueError(f"unknown queue order {order!r}; choose one of {', '.join(QUEUE_ORDERS)}")
    return order


@dataclass(order=True)
class Entry(Generic[T]):
    #: The time it should be done by, on the queue's clock: its deadline less its remaining
    #: critical path (order critical_path), or its deadline (order deadline).
    key: float
    seq: int
    enqueued_at: float = field(compare=False)
    priority: int = field(compare=False)
    item: T = field(compare=False)
    #: Its request's deadline, and the expected seconds of its request's work after it.
    deadline: float = field(compare=False)
    critical_path: float = field(compare=False)
    removed: bool = field(default=False, compare=False)

    def slack(self, now: float) -> float:
        """Seconds left for it to wait and run before its request is expected to miss its
        deadline (negative: expected late)."""
        return self.deadline - self.critical_path - now


class CapabilityQueue(Generic[T]):
    """The queue of one capability: `push`, `pop`, `remove`, bounded."""

    def __init__(
        self, capability: str, bound: int, aging: float, order: str = CRITICAL_PATH
    ) -> None:
        self.capability = capability
        self.bound = bound
        #: Seconds of waiting worth one priority class.
        self.aging = aging
        #: How entries of a class are ordered: CRITICAL_PATH or DEADLINE.
        self.order = check_order(order)
        self._heaps: dict[int, list[Entry[T]]] = {p: [] for p in PRIORITY_CLASSES}
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(
        self,
        item: T,
        *,
        priority: int,
        deadline: float,
        now: float,
        critical_path: float = 0.0,
    ) -> Entry[T]:
        """Queue an item; ResourceExhausted when the queue is at its bound.

        `critical_path` is the expected seconds of its request's work that must
        follow it (0 for a request's last step or a lone subtask).
        """
        if self._size >= self.bound:
            raise ResourceExhausted(
                f"the queue for capability {self.capability!r} is full ({self.bound} subtasks)",
                retry_after=1.0,
                reason="QUEUE_FULL",
                metadata={"capability": self.capability},
            )
        priority = priority if priority in self._heaps else NORMAL
        key = deadline - critical_path if self.order == CRITICAL_PATH else deadline
        entry = Entry(key, next(self._seq), now, priority, item, deadline, critical_path)
        heapq.heappush(self._heaps[priority], entry)
        self._size += 1
        return entry

    def remove(self, entry: Entry[T]) -> None:
        """Take an entry out (its request was cancelled); a no-op when already gone."""
        if not entry.removed:
            entry.removed = True
            self._size -= 1

    def pop(self, now: float) -> T | None:
        """The next item by aged priority, key (slack or deadline) and arrival; None when
        empty."""
        best = self._head(now)
        if best is None:
            return None
        heapq.heappop(self._heaps[best.priority])
        best.removed = True
        self._size -= 1
        return best.item

    def peek(self, now: float) -> T | None:
        """The item `pop` would return, left in the queue."""
        head = self._head(now)
        return None if head is None else head.item

    def urgency(self, now: float) -> tuple[float, float] | None:
        """How urgent the head is, as a sort key (lower first) comparable across queues:
        its aged class (negated), then its key; None when empty."""
        head = self._head(now)
        if head is None:
            return None
        return -(head.priority + (now - head.enqueued_at) / self.aging), head.key

    def _head(self, now: float) -> Entry[T] | None:
        best: Entry[T] | None = None
        best_rank = -1.0
        for priority, heap in self._heaps.items():
            while heap and heap[0].removed:
                heapq.heappop(heap)
            if not heap:
                continue
            head = heap[0]
            rank = priority + (now - head.enqueued_at) / self.aging
            if best is None or rank > best_rank or (rank == best_rank and head < best):
                best, best_rank = head, rank
        return best

    def oldest_age(self, now: float) -> float:
        """Seconds the longest-waiting live entry has waited (0 when empty)."""
        ages = [now - e.enqueued_at for e in self._entries()]
        return max(ages, default=0.0)

    def least_slack(self, now: float) -> float | None:
        """The least slack of a live entry (see `Entry.slack`), whatever the order; None
        when empty."""
        return min((e.slack(now) for e in self._entries()), default=None)

    def _entries(self) -> Iterator[Entry[T]]:
        for heap in self._heaps.values():
            yield from (e for e in heap if not e.removed)
