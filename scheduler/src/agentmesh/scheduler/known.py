"""Requests the scheduler already knows: a repeat of an id, and a read of one.

A request is known by its key (`records.request_key`): its id in its
tenant's own space of ids. A repeat of a known key attaches to the running
request, returns the stored outcome, or runs a request that failed with a
retryable code again; a read (GetRequest) shows it. The key is made from
the tenant the caller acts for, never from the id alone, so that one
tenant's ids neither hide nor reveal another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler import requests
from agentmesh.scheduler.admission import Admission
from agentmesh.scheduler.calls import EventSink
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.lifecycle import RequestRunner
from agentmesh.scheduler.records import TENANT_SEPARATOR, RequestRecord, request_key
from agentmesh.scheduler.requests import RequestIndex
from agentmesh.scheduler.slots import Slots
from agentmesh.scheduler.store import Store, StoredRequest
from agentmesh.server.clock import Clock


class KnownRequests:
    """Answers for request ids already used, by the tenant they were used in."""

    def __init__(
        self,
        config: SchedulerConfig,
        clock: Clock,
        index: RequestIndex,
        runner: RequestRunner,
        store: Store | None,
        admission: Admission,
        slots: Slots,
    ) -> None:
        self.config = config
        self.clock = clock
        self.index = index
        self.runner = runner
        self.store = store
        self.admission = admission
        self.slots = slots

    async def repeat(
        self,
        tenant: str,
        request_id: str,
        fingerprint: str,
        timeout: float | None,
        on_plan: Callable[[RequestRecord], None] | None,
        on_event: EventSink,
    ) -> RequestRecord | None:
        """The outcome for `tenant`'s known request id: attached, stored, or run again;
        None if `tenant` has no request of that id (another tenant's does not count)."""
        key = request_key(tenant, request_id)
        deadline = self.clock.now() + (
            timeout if timeout is not None else self.config.default_deadline
        )
        running = self.index.running(key)
        if running is not None:
            requests.check_same(request_id, self.index.fingerprint(key), fingerprint)
            try:
                outcome = await asyncio.shield(running)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not running.cancelled() or (current is not None and current.cancelling()):
                    raise
                # The caller that started it went away: this repeat runs it again (or,
                # when another replica took it over, follows it there, below).
            else:
                await self.runner.durable(deadline)
                if key not in self.runner.lost:
                    return outcome
        record = self.index.get(key)
        known = self.index.fingerprint(key)
        if record is None and self.store is not None:
            stored = await self._load(key)
            if stored is not None:
                record, known = stored.record, stored.fingerprint
        if record is None:
            return None
        requests.check_same(request_id, known, fingerprint)
        if self.runner.replicas is not None and not record.finished:
            # Another replica runs it: its outcome, once it has one, from the database.
            record = await self.runner.followed(key, deadline)
        if requests.rerunnable(record):
            return await self._rerun(record, fingerprint, timeout, on_plan, on_event)
        await self.runner.durable(deadline)
        return record

    async def _rerun(
        self,
        record: RequestRecord,
        fingerprint: str,
        timeout: float | None,
        on_plan: Callable[[RequestRecord], None] | None,
        on_event: EventSink,
    ) -> RequestRecord:
        """Run a request that failed with a retryable code again: admitted as a new one."""
        self.runner.check_store()
        deadline = self.admission.deadline_from(timeout)
        self.admission.admit(record.plan, self.index.active(), self.slots.has_room)
        return await self.runner.rerun(record, deadline, fingerprint, on_plan, on_event)

    async def _load(self, key: str) -> StoredRequest | None:
        """The request as stored; read in a thread when the store is a database server."""
        assert self.store is not None
        if self.store.remote:
            return await asyncio.to_thread(self.store.load, key)
        return self.store.load(key)

    async def get(self, tenant: str, request_id: str) -> RequestRecord:
        """`tenant`'s request of this id; NOT_FOUND for an id `tenant` never used (whether
        or not another tenant did: the same answer, nothing tells)."""
        if not request_id:
            raise InvalidArgument("request_id is empty", [FieldViolation("request_id", "required")])
        if TENANT_SEPARATOR in request_id:  # no request id has it: not a key in disguise
            raise requests.unknown(request_id)
        key = request_key(tenant, request_id)
        record = self.index.get(key)
        if record is None and self.store is not None:
            stored = await self._load(key)
            record = stored.record if stored is not None else None
        if record is None:
            raise requests.unknown(request_id)
        return record

    async def read(self, tenant: str, request_id: str, timeout: float | None) -> RequestRecord:
        """`get` for a caller outside (GetRequest): a request that may not be committed yet
        (a Submit's steps start before its first commit) is shown once it is, so that
        nothing is shown that a crash could take back. UNAVAILABLE when the store cannot
        commit within the call's deadline."""
        record = await self.get(tenant, request_id)
        if self.store is not None and self.index.get(record.key) is record:
            remaining = self.config.default_deadline if timeout is None else timeout
            await self.runner.durable(self.clock.now() + remaining)
        return record
