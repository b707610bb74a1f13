"""The scheduler's in-memory index of requests: the running ones and recent finished ones.

The store (`store.py`) holds every request durably; this index is what the
scheduler consults first, and where a running request's task lives, so that
a repeated request id attaches to it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from agentmesh.scheduler.executor import RequestRecord


class RequestIndex:
    """Requests by id: the running ones, and a bounded window of finished ones."""

    def __init__(self, retained: int) -> None:
        self.retained = retained
        self._running: dict[str, asyncio.Task[RequestRecord]] = {}
        self._records: OrderedDict[str, RequestRecord] = OrderedDict()

    def get(self, request_id: str) -> RequestRecord | None:
        return self._records.get(request_id)

    def running(self, request_id: str) -> asyncio.Task[RequestRecord] | None:
        return self._running.get(request_id)

    def active(self) -> int:
        return len(self._running)

    def start(self, record: RequestRecord, task: asyncio.Task[RequestRecord]) -> None:
        self._records[record.request_id] = record
        self._running[record.request_id] = task
        task.add_done_callback(lambda _: self._finish(record.request_id))

    def _finish(self, request_id: str) -> None:
        self._running.pop(request_id, None)
        while len(self._records) > self.retained:
            oldest = next(iter(self._records))
            if oldest in self._running:
                break
            self._records.popitem(last=False)
