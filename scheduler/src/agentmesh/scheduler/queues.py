"""Bounded per-capability priority queues with aging.

Within a priority class, entries leave earliest-deadline-first, then by
arrival. Deadlines are absolute, so EDF alone cannot starve an entry inside
its class. Across classes, the head of a lower class gains one class for
every `aging` seconds it has waited, so a steady stream of urgent work
delays but never starves the rest.
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


@dataclass(order=True)
class Entry(Generic[T]):
    deadline: float
    seq: int
    enqueued_at: float = field(compare=False)
    priority: int = field(compare=False)
    item: T = field(compare=False)
    removed: bool = field(default=False, compare=False)


class CapabilityQueue(Generic[T]):
    """The queue of one capability: `push`, `pop`, `remove`, bounded."""

    def __init__(self, capability: str, bound: int, aging: float) -> None:
        self.capability = capability
        self.bound = bound
        #: Seconds of waiting worth one priority class.
        self.aging = aging
        self._heaps: dict[int, list[Entry[T]]] = {p: [] for p in PRIORITY_CLASSES}
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, item: T, *, priority: int, deadline: float, now: float) -> Entry[T]:
        """Queue an item; ResourceExhausted when the queue is at its bound."""
        if self._size >= self.bound:
            raise ResourceExhausted(
                f"the queue for capability {self.capability!r} is full ({self.bound} subtasks)",
                retry_after=1.0,
                reason="QUEUE_FULL",
                metadata={"capability": self.capability},
            )
        priority = priority if priority in self._heaps else NORMAL
        entry = Entry(deadline, next(self._seq), now, priority, item)
        heapq.heappush(self._heaps[priority], entry)
        self._size += 1
        return entry

    def remove(self, entry: Entry[T]) -> None:
        """Take an entry out (its request was cancelled); a no-op when already gone."""
        if not entry.removed:
            entry.removed = True
            self._size -= 1

    def pop(self, now: float) -> T | None:
        """The next item by aged priority, deadline and arrival; None when empty."""
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

    def _entries(self) -> Iterator[Entry[T]]:
        for heap in self._heaps.values():
            yield from (e for e in heap if not e.removed)
