"""Workers joining, beating and leaving: registration checks, heartbeats, eviction.

A worker silent for longer than the liveness timeout is evicted and its
in-flight attempts go back to the queue; a pause of the scheduler itself
restarts every liveness window instead (see `evict_silent`).
"""

from __future__ import annotations

import logging
import re

from agentmesh.errors import FieldViolation, InvalidArgument, NotFound
from agentmesh.scheduler import skillbook
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.registry import HealthReport, Registry, WorkerRecord, WorkerSpec
from agentmesh.server.clock import Clock

log = logging.getLogger(__name__)

ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$")


class Membership:
    """The registry's door: what registers, beats and is evicted, told to the dispatcher."""

    def __init__(
        self,
        registry: Registry,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        heartbeat_interval: float,
        liveness_timeout: float,
    ) -> None:
        self.registry = registry
        self.dispatcher = dispatcher
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.liveness_timeout = liveness_timeout

    def register(self, spec: WorkerSpec) -> WorkerRecord:
        check_registration(spec)
        record = self.registry.register(skillbook.complete(spec), self.clock.now())
        self.dispatcher.workers_changed(record)
        return record

    def heartbeat(self, worker_id: str, report: HealthReport) -> WorkerRecord:
        record = self.registry.heartbeat(worker_id, report, self.clock.now())
        if record is None:
            raise NotFound(f"worker {worker_id!r} is not registered", reason="UNKNOWN_WORKER")
        self.dispatcher.workers_changed(record)
        return record

    async def evict(self, worker_id: str, reason: str) -> WorkerRecord | None:
        """Remove a worker (reason: heartbeat_timeout or stream_closed), re-queueing its work."""
        return await self.dispatcher.evict(worker_id, reason)

    async def evict_silent(self, stalled: float = 0.0) -> list[str]:
        """Evict every worker silent for longer than the liveness timeout.

        `stalled` is how many seconds the scheduler itself did not run just
        before this sweep (the sweeper measures it). After a stall of half a
        heartbeat interval or more, heartbeats may wait unread in the sockets:
        they say nothing of the workers, so everyone gets a fresh liveness
        window from now, and no one is evicted for the scheduler's own pause.
        """
        now = self.clock.now()
        if stalled >= self.heartbeat_interval / 2:
            self.registry.restart_liveness(now)
            log.warning(
                "scheduler stalled: liveness windows restart",
                extra={"stalled_s": round(stalled, 3), "workers": len(self.registry)},
            )
        cutoff = now - self.liveness_timeout
        evicted = [r.worker_id for r in self.registry.silent_since(cutoff)]
        for worker_id in evicted:
            await self.evict(worker_id, "heartbeat_timeout")
        return evicted


def check_registration(spec: WorkerSpec) -> None:
    """InvalidArgument, a violation for each bad field, for a registration that cannot work."""
    violations = []
    if not spec.worker_id:
        violations.append(FieldViolation("worker.worker_id", "required"))
    if not ADDRESS.match(spec.address) or not 0 < int(spec.address.rpartition(":")[2]) < 65536:
        violations.append(FieldViolation("worker.address", "host:port, such as 127.0.0.1:7001"))
    if not spec.capabilities:
        violations.append(FieldViolation("worker.capabilities", "at least one"))
    if spec.capacity < 1:
        violations.append(FieldViolation("worker.capacity", "at least 1"))
    if violations:
        raise InvalidArgument(
            "invalid worker registration: " + ", ".join(v.field for v in violations),
            violations,
        )
