"""A worker pool's backlog, in expected seconds: what the autoscaler scales it on.

A pool is the workers one Deployment runs: a set of capabilities, a tier, or
both (`Pool`, from the metadata of KEDA's ScaledObject). Its backlog metric
anticipates the queue rather than trailing it:

    metric = Σ queued(c) × latency(c) ÷ capacity      work waiting, in one worker's seconds
           + oldest wait                              how late the queue already is
           + target × in_flight ÷ capacity            the workers busy now, one target each

- `queued(c)` counts the subtasks of each capability `c` of the pool waiting
  in its queue of the pool's tier, and those waiting for a worker offering
  `c` to register at all (a pool scaled to zero has none);
- `latency(c)` is the scheduler's typical attempt latency of `c`
  (`critical_path.CapabilityLatencies`, the estimate that orders the queues);
- `capacity` is the slots of one worker of the pool: the median of its live
  workers' declared capacities, or the metadata's `workerCapacity` while it
  has none;
- the oldest wait is the age of the pool's longest-waiting subtask.

KEDA asks for `ceil(metric / target)` replicas (the external metric's
AverageValue), so the count is: the workers busy now, plus the workers that
clear the queue within `target` seconds, plus one per `target` seconds the
oldest subtask has already waited. The first term keeps a steady load that
leaves no queue from being scaled away (a queue alone would read 0 there);
the second adds workers as soon as work queues, before anything has waited
long; the third keeps adding them while the queue is late anyway (a latency
estimate that was too low). With nothing queued or running the metric is 0
and the pool is inactive: KEDA may take it to zero replicas.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.scheduler import tiers
from agentmesh.scheduler.critical_path import CapabilityLatencies
from agentmesh.scheduler.registry import Registry, WorkerRecord
from agentmesh.scheduler.slots import Slots
from agentmesh.tiers import Tier

#: The metadata keys a ScaledObject's trigger may set (scalerMetadata); KEDA adds its own
#: (`scalerAddress`), which are ignored.
CAPABILITIES, TIER = "capabilities", "tier"
TARGET, ACTIVATION, WORKER_CAPACITY = "targetSeconds", "activationSeconds", "workerCapacity"

DEFAULT_TARGET = 10.0
DEFAULT_WORKER_CAPACITY = 4  # AGENTMESH_CAPACITY's default
_FIELD = "scaledObjectRef.scalerMetadata"


@dataclass(frozen=True)
class Pool:
    """The workers one ScaledObject scales, and the rule it scales them by."""

    #: Capabilities whose work the pool serves; empty: every capability (of the tier).
    capabilities: frozenset[str]
    #: The tier its workers declare; None: every tier (of the capabilities).
    tier: Tier | None
    #: Seconds of backlog one replica is for: KEDA asks for ceil(metric / target). Default 10.
    target: float = DEFAULT_TARGET
    #: The pool is active (KEDA scales it from zero) while the metric is above this. Default 0.
    activation: float = 0.0
    #: One worker's slots while none is registered to declare them. Default 4.
    worker_capacity: int = DEFAULT_WORKER_CAPACITY

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Pool:
        """The pool a ScaledObject's metadata names; InvalidArgument naming each bad key."""
        violations: list[FieldViolation] = []
        capabilities = frozenset(
            c.strip() for c in metadata.get(CAPABILITIES, "").split(",") if c.strip()
        )
        tier: Tier | None = None
        tier_name = metadata.get(TIER, "").strip().lower()
        if tier_name:
            names = {t.label: t for t in Tier if t is not Tier.UNSPECIFIED}
            tier = names.get(tier_name)
            if tier is None:
                violations.append(FieldViolation(f"{_FIELD}.{TIER}", f"one of {', '.join(names)}"))
        if not capabilities and not tier_name:
            violations.append(
                FieldViolation(
                    f"{_FIELD}.{CAPABILITIES}", f"a pool names capabilities, a {TIER}, or both"
                )
            )
        target = _number(metadata, TARGET, DEFAULT_TARGET, violations, positive=True)
        activation = _number(metadata, ACTIVATION, 0.0, violations, positive=False)
        capacity = _number(metadata, WORKER_CAPACITY, DEFAULT_WORKER_CAPACITY, violations, True)
        if capacity != int(capacity):
            violations.append(FieldViolation(f"{_FIELD}.{WORKER_CAPACITY}", "a whole number"))
        if violations:
            raise InvalidArgument(
                "the ScaledObject's metadata does not name a worker pool", violations
            )
        return cls(capabilities, tier, target, activation, int(capacity))

    @property
    def name(self) -> str:
        """A metric name for the pool: its tier and capabilities, in a stable order."""
        tier = self.tier.label if self.tier is not None else "any"
        skills = "-".join(sorted(self.capabilities)) or "all"
        return f"agentmesh-backlog-{tier}-{skills}".replace("_", "-")

    def has(self, worker: WorkerRecord) -> bool:
        """Whether a worker belongs to the pool."""
        if self.tier is not None and tiers.rank(worker.spec.tier) != self.tier:
            return False
        return not self.capabilities or not self.capabilities.isdisjoint(worker.spec.capabilities)


def _number(
    metadata: Mapping[str, str],
    key: str,
    default: float,
    violations: list[FieldViolation],
    positive: bool,
) -> float:
    raw = metadata.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        violations.append(
            FieldViolation(
                f"{_FIELD}.{key}", "a number above 0" if positive else "a number of 0 or more"
            )
        )
        return default
    return value


@dataclass(frozen=True)
class Backlog:
    """What a pool has to do now, and its metric."""

    pool: Pool
    #: Subtasks waiting: in the pool's queues, and for a worker to register.
    queued: int
    #: Σ queued × latency over the pool's capabilities: the waiting work in slot-seconds.
    queued_work: float
    #: The longest any of them has waited.
    oldest_wait: float
    #: Subtasks running on the pool's workers.
    in_flight: int
    #: The pool's live workers, and the slots of one of them.
    workers: int
    worker_capacity: int

    @property
    def waiting_seconds(self) -> float:
        """The waiting work in one worker's seconds, plus the oldest wait."""
        return self.queued_work / max(self.worker_capacity, 1) + self.oldest_wait

    @property
    def busy_workers(self) -> float:
        """The workers' worth of subtasks running now."""
        return self.in_flight / max(self.worker_capacity, 1)

    @property
    def metric(self) -> float:
        """Expected seconds of backlog (see the module's docstring)."""
        return self.waiting_seconds + self.pool.target * self.busy_workers

    @property
    def active(self) -> bool:
        """Whether the pool needs a worker: KEDA scales an inactive pool to its minimum."""
        return self.metric > self.pool.activation

    @property
    def replicas(self) -> int:
        """The replicas KEDA asks for: ceil(metric / target)."""
        return math.ceil(self.metric / self.pool.target)


def measure(
    pool: Pool,
    registry: Registry,
    slots: Slots,
    latencies: CapabilityLatencies,
    others: Sequence[ReplicaBacklog] = (),
) -> Backlog:
    """The pool's backlog now, from the scheduler's queues, workers and latency estimates,
    and the other replicas' backlogs (`others`, read from a shared store): the mesh's."""
    members = [w for w in registry.workers() if pool.has(w)]
    live = [w for w in members if not w.draining]
    capacities = sorted(w.spec.capacity for w in live)
    capacity = capacities[(len(capacities) - 1) // 2] if capacities else pool.worker_capacity
    capabilities = pool.capabilities or slots.capabilities_waiting().union(
        *(o.capabilities() for o in others)
    )
    queued, work, oldest = 0, 0.0, 0.0
    for capability in capabilities:
        counts = [slots.waiting(capability, pool.tier), slots.joining(capability)]
        counts += [o.waiting(capability, pool.tier) for o in others]
        count = sum(n for n, _ in counts)
        if count:
            queued += count
            work += count * latencies.estimate(capability)
            oldest = max(oldest, *(age for _, age in counts))
    # Workers register with every replica: each counts its own subtasks on them.
    in_flight = sum(
        w.in_flight + sum(o.in_flight.get(w.worker_id, 0) for o in others) for w in members
    )
    return Backlog(
        pool=pool,
        queued=queued,
        queued_work=work,
        oldest_wait=oldest,
        in_flight=in_flight,
        workers=len(live),
        worker_capacity=capacity,
    )


@dataclass(frozen=True)
class ReplicaBacklog:
    """Another replica's backlog, as it wrote it to the shared store (`local_backlog`)."""

    #: {capability: {tier (as text): [waiting, oldest wait]}}, "joining" under tier "j".
    queues: Mapping[str, Mapping[str, list[float]]]
    #: Its subtasks in flight on each worker.
    in_flight: Mapping[str, int]

    @classmethod
    def from_json(cls, text: str) -> ReplicaBacklog:
        data = json.loads(text)
        return cls(data.get("queues", {}), data.get("in_flight", {}))

    def capabilities(self) -> set[str]:
        return set(self.queues)

    def waiting(self, capability: str, tier: int | None) -> tuple[int, float]:
        """Its subtasks of `capability` waiting in the tier's queue (every tier for None)
        or for a worker to register, and the longest wait."""
        found = [
            count
            for key, count in self.queues.get(capability, {}).items()
            if tier is None or key in (str(tier), JOINING)
        ]
        return int(sum(n for n, _ in found)), max((age for _, age in found), default=0.0)


#: The key of the subtasks waiting for a worker to register, beside the tiers' queues.
JOINING = "j"


def local_backlog(registry: Registry, slots: Slots) -> str:
    """This replica's backlog as JSON text, for the others (`ReplicaBacklog`)."""
    queues: dict[str, dict[str, list[float]]] = {}
    for capability in slots.capabilities_waiting():
        by_tier = queues[capability] = {}
        for tier in Tier:
            waiting, age = slots.waiting(capability, tier)
            if waiting:
                by_tier[str(int(tier))] = [waiting, round(age, 3)]
        joining, age = slots.joining(capability)
        if joining:
            by_tier[JOINING] = [joining, round(age, 3)]
    in_flight = {w.worker_id: w.in_flight for w in registry.workers() if w.in_flight}
    return json.dumps({"queues": queues, "in_flight": in_flight})
