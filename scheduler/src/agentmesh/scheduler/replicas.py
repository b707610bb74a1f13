"""A scheduler among several over one PostgreSQL database: leases kept, requests taken over.

The SQL is in pgreplicas.py; this is the scheduler's side. `Replicas` renews
this replica's leases every third of the lease (through the store's writer),
looks every `takeover_interval` seconds for running requests whose lease
expired (a replica that died, or stalled past its lease) and resumes those
it claims exactly as a restarted scheduler resumes its own
(`RequestRunner.resume`), and stops running a request as soon as a fenced
write of it is refused (`RequestRunner.lose`): another replica owns it now.
Both are counted (`DispatchObserver.requests_taken_over`, `request_fenced`)
and logged with each request's tenant, so that two tenants' requests of one
id are told apart.
It also follows a request another replica runs, reading it from the
database until it finishes (`follow`), for a repeat of its id; and every
`report_interval` seconds it writes its backlog to the database and reads
the other replicas' (`others`), so that the autoscaler sees the mesh's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from agentmesh.errors import DeadlineExceeded
from agentmesh.scheduler.backlog import ReplicaBacklog
from agentmesh.scheduler.calls import DispatchObserver, NullObserver
from agentmesh.scheduler.pgreplicas import Lease
from agentmesh.scheduler.records import RequestRecord, key_fields, split_key
from agentmesh.scheduler.states import RequestState
from agentmesh.scheduler.store import Store, StoredRequest
from agentmesh.server.clock import Clock

log = logging.getLogger(__name__)

#: Seconds between two reads of a request another replica runs, while waiting for its end.
FOLLOW_INTERVAL = 0.1


class SharedStore(Store, Protocol):
    """A store several schedulers share (`PostgresStore`)."""

    def watch(self, on_lost: object) -> None: ...

    def renew(self) -> None: ...

    def claim(self, limit: int | None = 100, *, mine: bool = False) -> list[StoredRequest]: ...

    def report_backlog(self, backlog: str) -> None: ...

    def mesh_backlog(self, fresh: float) -> dict[str, str]: ...

    @property
    def lease(self) -> Lease: ...


def shared(store: Store | None) -> SharedStore | None:
    """The store as one several schedulers share, or None (SQLite, memory: one scheduler)."""
    return store if store is not None and hasattr(store, "claim") else None  # type: ignore[return-value]


class Runner(Protocol):
    """What `Replicas` asks of the request runner."""

    def resume(self, stored: list[StoredRequest], delay: float = 0.0) -> int: ...

    def lose(self, key: str) -> bool:
        """Stop running the request kept under `key`; False if it was already lost."""
        ...


class Replicas:
    """Keeps this replica's leases and takes over the requests of replicas gone."""

    def __init__(
        self,
        store: SharedStore,
        runner: Runner,
        clock: Clock,
        *,
        lease: float,
        takeover_interval: float = 1.0,
        claim_limit: int = 100,
        backlog: Callable[[], str] = lambda: "{}",
        report_interval: float = 1.0,
        observer: DispatchObserver | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.clock = clock
        self.lease = lease
        self.takeover_interval = takeover_interval
        self.claim_limit = claim_limit
        self.backlog = backlog
        self.report_interval = report_interval
        self.observer = observer or NullObserver()
        #: The other replicas' backlogs, as last read (those heard from within three
        #: report intervals): with this replica's own, the mesh's.
        self.others: list[ReplicaBacklog] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Renew and take over in the background, from now on (on the running loop)."""
        self.store.watch(self.lose)
        self._tasks = [
            asyncio.create_task(self._renew_forever(), name="lease-renewals"),
            asyncio.create_task(self._take_over_forever(), name="takeovers"),
            asyncio.create_task(self._share_backlog_forever(), name="backlogs"),
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def take_over(self) -> int:
        """Claim requests whose lease expired and resume them now; how many."""
        claimed = await asyncio.to_thread(self.store.claim, self.claim_limit)
        if not claimed:
            return 0
        released = sum(stored.released for stored in claimed)
        self.observer.requests_taken_over(len(claimed) - released, released)
        for stored in claimed:
            log.log(
                logging.INFO if stored.released else logging.WARNING,
                "taking over a request its scheduler released at a clean stop"
                if stored.released
                else "taking over a request whose scheduler's lease expired",
                extra={**key_fields(stored.record.key), "epoch": stored.record.epoch},
            )
        return self.runner.resume(claimed)

    def lose(self, key: str) -> None:
        """The request kept under `key` was taken over by another replica (a fenced write
        of it was refused): stop running it here; logged and counted once per loss."""
        if self.runner.lose(key):
            self.observer.request_fenced()
            log.warning(
                "request taken over by another scheduler: no longer run here",
                extra={**key_fields(key), "replica": self.store.lease.replica},
            )

    async def follow(self, key: str, deadline: float) -> RequestRecord | None:
        """The request kept under `key`, read from the database once it has finished,
        another replica having run it; None if it is not there. DEADLINE_EXCEEDED if it is
        still running at `deadline` (on the clock)."""
        request_id = split_key(key)[1]
        while True:
            stored = await asyncio.to_thread(self.store.load, key)
            if stored is None or stored.record.state != RequestState.RUNNING:
                return stored.record if stored is not None else None
            if self.clock.now() + FOLLOW_INTERVAL >= deadline:
                raise DeadlineExceeded(
                    f"request {request_id!r} is still running (on another scheduler) at the "
                    "deadline; ask again with the same request id",
                    reason="STILL_RUNNING",
                    metadata={"request_id": request_id},
                )
            await asyncio.sleep(FOLLOW_INTERVAL)

    async def _renew_forever(self) -> None:
        while True:
            self.store.renew()
            await asyncio.sleep(self.lease / 3)

    async def share_backlog(self) -> None:
        """Write this replica's backlog to the store and read the others' fresh ones."""
        self.store.report_backlog(self.backlog())
        rows = await asyncio.to_thread(self.store.mesh_backlog, 3 * self.report_interval)
        me = self.store.lease.replica
        self.others = [ReplicaBacklog.from_json(text) for r, text in rows.items() if r != me]

    async def _share_backlog_forever(self) -> None:
        while True:
            try:
                await self.share_backlog()
            except Exception as error:  # the store down: the last backlogs read stay
                log.debug("backlog exchange failed", extra={"error": str(error)})
            await asyncio.sleep(self.report_interval)

    async def _take_over_forever(self) -> None:
        while True:
            await asyncio.sleep(self.takeover_interval)
            try:
                await self.take_over()
            except Exception as error:  # the store down: the writer says so; try again
                log.debug("takeover check failed", extra={"error": str(error)})
