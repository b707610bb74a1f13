"""Outlier ejection: a worker that keeps failing is taken out of rotation for a while.

A worker is ejected after `consecutive_failures` failed attempts in a row,
or after two in a row while its recent error ratio is above `error_ratio`.
Output that fails validation counts as a failure like any other. The
cool-down doubles with each ejection (capped), and never more than
`max_ejected_share` of the workers offering any one of its capabilities are
out at once, so ejection cannot empty a capability.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentmesh.scheduler.registry import Registry, WorkerRecord


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_failures: int = 5
    """Failed attempts in a row that eject a worker. Default 5."""
    error_ratio: float = 0.5
    """Recent error ratio above which two failures in a row eject. Default 0.5."""
    base_ejection: float = 10.0
    """Cool-down of a first ejection, in seconds; doubles each time. Default 10 s."""
    max_ejection: float = 300.0
    """Longest cool-down, in seconds. Default 300 s."""
    max_ejected_share: float = 0.5
    """Most of a capability's workers that may be ejected at once. Default 0.5."""


class OutlierDetector:
    def __init__(self, policy: OutlierPolicy, registry: Registry) -> None:
        self.policy = policy
        self.registry = registry

    def observe(self, worker: WorkerRecord, failed: bool, now: float) -> bool:
        """Record an attempt's outcome; True when it ejects the worker."""
        if not failed:
            worker.consecutive_failures = 0
            return False
        worker.consecutive_failures += 1
        p = self.policy
        sick = worker.consecutive_failures >= p.consecutive_failures or (
            worker.consecutive_failures >= 2 and worker.errors.rate(now) > p.error_ratio
        )
        if not sick or worker.ejected_until > now or not self._may_eject(worker, now):
            return False
        worker.ejections += 1
        worker.consecutive_failures = 0
        cool_down = min(p.base_ejection * 2 ** (worker.ejections - 1), p.max_ejection)
        worker.ejected_until = now + cool_down
        return True

    def _may_eject(self, worker: WorkerRecord, now: float) -> bool:
        for capability in worker.spec.capabilities:
            peers = self.registry.offering(capability)
            out = sum(1 for w in peers if w.ejected_until > now)
            if out + 1 > self.policy.max_ejected_share * len(peers):
                return False
        return True
