"""The scheduler's in-memory index of requests: the running ones and recent finished ones.

The store (`store.py`) holds every request durably; this index is what the
scheduler consults first, and where a running request's task lives, so that
a repeated request id attaches to it.

A request id is an idempotency key for one set of parameters, in its
tenant's own space of ids: requests are indexed by their key
(`records.request_key`, the id qualified by the tenant), so that two
tenants' requests of the same id are two requests. Each request keeps a
fingerprint (a digest of its source, input, priority and cost budget), and
a repeat is compared with it before it is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from agentmesh.errors import AlreadyExists, NotFound
from agentmesh.scheduler.records import RequestRecord, request_key
from agentmesh.scheduler.states import RequestState

#: Failures after which a repeat of the request runs it again, under the same
#: id: the same call may succeed later (and a cancelled one was never refused).
RERUN_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED"})


def fingerprint(
    source: Mapping[str, Any], data: Mapping[str, Any], priority: int, cost_budget: float
) -> str:
    """A digest of a request's parameters, the same for the same parameters in any key order."""
    canonical = json.dumps(
        {"source": source, "input": data, "priority": priority, "cost_budget": cost_budget},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same(request_id: str, known: str | None, given: str) -> None:
    """Refuse a request id reused with other parameters (ALREADY_EXISTS, REQUEST_ID_REUSED).

    An unknown fingerprint (None, or empty for a request stored before
    fingerprints were kept) is taken as the same.
    """
    if known and known != given:
        raise AlreadyExists(
            f"request id {request_id!r} is already used by a request with other parameters "
            "(workflow, plan or goal, input, priority or cost budget); a new request needs "
            "a new request id",
            reason="REQUEST_ID_REUSED",
            metadata={"request_id": request_id},
        )


def unknown(request_id: str) -> NotFound:
    """The answer for a request id the caller may not know of."""
    return NotFound(f"no request {request_id!r}", reason="UNKNOWN_REQUEST")


def rerunnable(record: RequestRecord) -> bool:
    """Whether a repeat runs this finished request again: it failed with a retryable code."""
    if record.state == RequestState.CANCELLED:
        return True
    return (
        record.state == RequestState.FAILED
        and record.error is not None
        and record.error.code in RERUN_CODES
    )


class RequestIndex:
    """Requests by key (`RequestRecord.key`): the running ones, and a bounded window of
    finished ones."""

    def __init__(self, retained: int) -> None:
        self.retained = retained
        self._running: dict[str, asyncio.Task[RequestRecord]] = {}
        self._records: OrderedDict[str, RequestRecord] = OrderedDict()
        self._fingerprints: dict[str, str] = {}
        #: Dispatch calls' request ids and fingerprints, the most recent `retained`.
        self._dispatched: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> RequestRecord | None:
        return self._records.get(key)

    def fingerprint(self, key: str) -> str | None:
        return self._fingerprints.get(key)

    def running(self, key: str) -> asyncio.Task[RequestRecord] | None:
        return self._running.get(key)

    def active(self) -> int:
        return len(self._running)

    def start(
        self, record: RequestRecord, task: asyncio.Task[RequestRecord], fingerprint: str = ""
    ) -> None:
        key = record.key
        self._records[key] = record
        self._records.move_to_end(key)
        self._fingerprints[key] = fingerprint
        self._running[key] = task
        task.add_done_callback(lambda done: self._finish(key, done))

    def forget(self, key: str) -> None:
        """Drop a request run here no longer (another scheduler has it): it is read from
        the store from now on."""
        self._records.pop(key, None)
        self._fingerprints.pop(key, None)
        self._running.pop(key, None)

    def claim_dispatch(self, tenant: str, request_id: str, fingerprint: str) -> None:
        """Remember a Dispatch call's id (in its tenant's space); refuse it when it was
        used with other parameters."""
        key = request_key(tenant, request_id)
        check_same(request_id, self._dispatched.get(key), fingerprint)
        self._dispatched[key] = fingerprint
        self._dispatched.move_to_end(key)
        while len(self._dispatched) > self.retained:
            self._dispatched.popitem(last=False)

    def _finish(self, key: str, task: asyncio.Task[RequestRecord]) -> None:
        if self._running.get(key) is task:  # not a run that replaced it
            del self._running[key]
        while len(self._records) > self.retained:
            oldest = next(iter(self._records))
            if oldest in self._running:
                break
            self._records.popitem(last=False)
            self._fingerprints.pop(oldest, None)
