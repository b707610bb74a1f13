"""Worker membership and live health, driven by heartbeats.

A worker is known from its Register call until it leaves, its Heartbeat
stream ends, or its heartbeats stop for longer than the liveness timeout;
`silent_since` finds the silent ones, and `restart_liveness` gives every
worker a fresh window after the scheduler itself stalled (heartbeats it did
not read are no sign of a dead worker). The registry only keeps state: the
dispatcher decides what eviction means for in-flight work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agentmesh.errors import FailedPrecondition
from agentmesh.scheduler.load import Pending
from agentmesh.server.estimators import ErrorRate, PeakEwma, decay_toward
from agentmesh.server.skills import Skill
from agentmesh.tiers import Tier


def _no_typical_latency() -> float:
    return 0.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker declares about itself when it registers."""

    worker_id: str
    address: str
    capabilities: frozenset[str]
    capacity: int = 1
    backend: str = ""
    model: str = ""
    tier: Tier = Tier.UNSPECIFIED
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0
    #: It serves ExecuteStream: subtasks go to it in batches on one stream.
    execute_stream: bool = False
    #: It runs plan fragments on that stream (see `fragments`).
    fragments: bool = False
    #: The contracts of its capabilities: as declared until `skillbook.complete` gives
    #: each capability one (then sorted by name).
    skills: tuple[Skill, ...] = field(default=(), hash=False)


@dataclass(frozen=True)
class HealthReport:
    """One heartbeat's worth of what the worker says about itself."""

    in_flight: int = 0
    capacity: int = 0
    queue_length: int = 0
    latency: float = 0.0
    error_rate: float = 0.0
    draining: bool = False


@dataclass
class WorkerRecord:
    """A registered worker: its declaration, load, and liveness."""

    spec: WorkerSpec
    latency: PeakEwma
    errors: ErrorRate
    last_heartbeat: float
    #: Subtasks the scheduler has sent and not yet seen answered.
    in_flight: int = 0
    health: HealthReport = field(default_factory=HealthReport)
    draining: bool = False
    #: Outlier ejection (see `outliers`): failures in a row, how often it was
    #: ejected, and until when it is out (on the scheduler's clock).
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    #: Start times of the attempts the scheduler has outstanding on it.
    pending: Pending = field(default_factory=Pending, repr=False)
    #: The typical latency of its peers, which a stale estimate decays towards
    #: (set by the registry).
    typical_latency: Callable[[], float] = field(default=_no_typical_latency, repr=False)

    @property
    def worker_id(self) -> str:
        return self.spec.worker_id

    def sampled_latency(self) -> float:
        """The last known latency: the scheduler's peak-EWMA or the worker's own report,
        whichever is worse (a worker slows down before the scheduler has seen it)."""
        return max(self.latency.estimate(), self.health.latency)

    def latency_estimate(self, now: float) -> float:
        """Expected seconds for a subtask now: what balancing and ListWorkers use.

        The last known latency decays towards the peers' typical latency for
        the time since the scheduler last saw an answer, so a worker that was
        slow once is not shunned for good; and it is at least the age of the
        oldest attempt outstanding, so a worker that stops answering stops
        looking fast.
        """
        since = now - self.latency.observed_at
        decayed = self.sampled_latency()
        # Under 0.1% of a time constant the decay changes nothing worth the
        # peers' median: a worker answering steadily skips it.
        if since > self.latency.decay / 1000:
            decayed = decay_toward(decayed, self.typical_latency(), since, self.latency.decay)
        return max(decayed, self.pending.oldest_age(now))

    def observe_latency(self, seconds: float, now: float) -> None:
        """Fold a successful attempt's latency into the estimate."""
        self.latency.observe(seconds, now, toward=self.typical_latency())

    @property
    def available(self) -> bool:
        """Whether the worker takes another subtask now."""
        return not self.draining and self.in_flight < self.spec.capacity


class Registry:
    """The workers of the mesh, indexed by id and by capability."""

    def __init__(self, *, initial_latency: float, latency_decay: float, error_decay: float) -> None:
        self.initial_latency = initial_latency
        self.latency_decay = latency_decay
        self.error_decay = error_decay
        self._workers: dict[str, WorkerRecord] = {}
        #: Liveness is counted from here at the earliest (see `restart_liveness`).
        self._liveness_from = float("-inf")
        #: Every live capability's contract, made again after a worker registers or leaves:
        #: the executor looks one up for each step it dispatches.
        self._contracts: dict[str, Skill] | None = None
        #: The workers offering each capability, made again after a worker registers or
        #: leaves: every dispatch looks its capability up several times.
        self._offering: dict[str, tuple[WorkerRecord, ...]] | None = None

    def __len__(self) -> int:
        return len(self._workers)

    def workers(self) -> list[WorkerRecord]:
        return list(self._workers.values())

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._workers.get(worker_id)

    def register(self, spec: WorkerSpec, now: float) -> WorkerRecord:
        """Add a worker, or update the declaration of a known one (keeping its load).

        FailedPrecondition when another worker offers one of its capabilities with
        other schemas: a capability has one contract in the mesh.
        """
        self.check_skills(spec)
        self._contracts = self._offering = None
        record = self._workers.get(spec.worker_id)
        if record is None:
            record = WorkerRecord(
                spec=spec,
                latency=PeakEwma(self.initial_latency, self.latency_decay, now),
                errors=ErrorRate(self.error_decay, now),
                last_heartbeat=now,
                typical_latency=lambda: self.typical_latency(spec.worker_id),
            )
            self._workers[spec.worker_id] = record
        else:
            record.spec = spec
            record.last_heartbeat = now
            record.draining = False
        return record

    def heartbeat(self, worker_id: str, report: HealthReport, now: float) -> WorkerRecord | None:
        """Record a health report; None when the worker is not registered."""
        record = self._workers.get(worker_id)
        if record is None:
            return None
        record.last_heartbeat = now
        record.health = report
        record.draining = report.draining
        if report.capacity > 0 and report.capacity != record.spec.capacity:
            record.spec = replace(record.spec, capacity=report.capacity)
        return record

    def remove(self, worker_id: str) -> WorkerRecord | None:
        self._contracts = self._offering = None
        return self._workers.pop(worker_id, None)

    def silent_since(self, cutoff: float) -> list[WorkerRecord]:
        """Workers whose last heartbeat is older than cutoff (and than the last restart)."""
        if self._liveness_from >= cutoff:
            return []
        return [r for r in self._workers.values() if r.last_heartbeat < cutoff]

    def restart_liveness(self, now: float) -> None:
        """Give every worker a fresh liveness window from now.

        For after a stall of the scheduler itself: heartbeats that arrived
        while it did not run are still unread, and say nothing of the workers.
        """
        self._liveness_from = max(self._liveness_from, now)

    def typical_latency(self, worker_id: str) -> float:
        """The lower median of the last known latencies of the workers sharing a
        capability with this one; the initial estimate when it has no peers."""
        record = self._workers.get(worker_id)
        if record is None:
            return self.initial_latency
        capabilities = record.spec.capabilities
        peers = sorted(
            r.sampled_latency()
            for r in self._workers.values()
            if r is not record and not capabilities.isdisjoint(r.spec.capabilities)
        )
        return peers[(len(peers) - 1) // 2] if peers else self.initial_latency

    def offering(self, capability: str) -> tuple[WorkerRecord, ...]:
        """Every worker that offers a capability, draining ones included."""
        if self._offering is None:
            index: dict[str, list[WorkerRecord]] = {}
            for record in self._workers.values():
                for name in record.spec.capabilities:
                    index.setdefault(name, []).append(record)
            self._offering = {name: tuple(records) for name, records in index.items()}
        return self._offering.get(capability, ())

    def capabilities(self) -> frozenset[str]:
        """Every capability some live worker offers."""
        return frozenset(c for r in self._workers.values() for c in r.spec.capabilities)

    def skill(self, capability: str) -> Skill | None:
        """The contract of a capability some worker offers; None when none does.

        Every worker offering it holds the same schemas (`check_skills`); the
        first registered one's spec speaks for them.
        """
        return self._live_contracts().get(capability)

    def skills(self) -> dict[str, Skill]:
        """The contract of every capability some worker offers, by name."""
        return dict(self._live_contracts())

    def _live_contracts(self) -> dict[str, Skill]:
        if self._contracts is None:
            self._contracts = {}
            for record in self._workers.values():
                for skill in record.spec.skills:
                    self._contracts.setdefault(skill.name, skill)
        return self._contracts

    def check_skills(self, spec: WorkerSpec) -> None:
        """Refuse a worker whose contract for a capability differs from another worker's.

        Schemas are compared as canonical JSON (`Skill.schemas_key`); the worker's
        own earlier registration does not count, so a worker alone with a
        capability may change its contract by registering again.
        """
        for skill in spec.skills:
            for record in self._workers.values():
                if record.worker_id == spec.worker_id:
                    continue
                held = next((s for s in record.spec.skills if s.name == skill.name), None)
                if held is not None and held.schemas_key != skill.schemas_key:
                    raise FailedPrecondition(
                        f"worker {spec.worker_id!r} offers {skill.name!r} with other input or "
                        f"output schemas than worker {record.worker_id!r}: a capability has one "
                        "contract in the mesh; give it another name, or the same schemas",
                        reason="SKILL_CONFLICT",
                        metadata={
                            "capability": skill.name,
                            "worker_id": spec.worker_id,
                            "conflicting_worker_id": record.worker_id,
                        },
                    )
