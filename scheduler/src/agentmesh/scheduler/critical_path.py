"""The expected remaining critical path of a request after one of its steps.

A queued step's slack is the time left to its request's deadline less the
work that must still follow it: the longest chain of its dependents down to
the end of the plan, each counted at its capability's typical latency
(`remaining_critical_path`). The queues order by it (see `queues`), so that
a step at the head of a long chain leaves before a last step with the same
deadline. It is computed when the step is dispatched, from the estimates
as they are then.

`CapabilityLatencies` keeps those estimates: an exponentially weighted mean
of each capability's successful attempt latencies, as the dispatcher
observes them (the worker's time and the hop to it). A plain mean, not a
peak-EWMA as for balancing: here one slow attempt should not make every
request with that capability look late. A capability never seen yet counts
as the lower median of those seen, or `default` while none has been.
"""

from __future__ import annotations

from collections.abc import Callable

from agentmesh.scheduler.plans import Plan, Step


class CapabilityLatencies:
    """Each capability's typical attempt latency in seconds, an EWMA of what was observed."""

    def __init__(self, default: float, weight: float = 0.1) -> None:
        #: The estimate of every capability while none has been observed.
        self.default = default
        #: The weight of a new observation (the first one is taken as it is).
        self.weight = weight
        self._estimates: dict[str, float] = {}

    def observe(self, capability: str, seconds: float) -> None:
        """Fold a successful attempt's latency into its capability's estimate."""
        current = self._estimates.get(capability)
        if current is None:
            self._estimates[capability] = seconds
        else:
            self._estimates[capability] = current + self.weight * (seconds - current)

    def estimate(self, capability: str) -> float:
        """The capability's estimate; for one never observed, the lower median of the
        others' (`default` when there are none)."""
        known = self._estimates.get(capability)
        if known is not None:
            return known
        if not self._estimates:
            return self.default
        seen = sorted(self._estimates.values())
        return seen[(len(seen) - 1) // 2]


def remaining_critical_path(plan: Plan, step_id: str, estimate: Callable[[str], float]) -> float:
    """Expected seconds of the plan's work after a step: the longest path over its
    dependents (direct and further) to the end of the plan, each step counted at
    `estimate(capability)`; 0 for a step nothing depends on.

    Optional and conditional dependents count as if they ran: the estimate
    errs towards urgency. The plan must be acyclic (`validate_plan`).
    """
    dependents: dict[str, list[Step]] = {}
    for step in plan.steps:
        for dep in step.depends_on:
            dependents.setdefault(dep, []).append(step)
    if step_id not in dependents:
        return 0.0
    # after[s]: the longest path after s, excluding s. Depth-first with an explicit stack,
    # so that a long chain does not meet the recursion limit.
    after: dict[str, float] = {}
    stack = [step_id]
    while stack:
        node = stack[-1]
        below = dependents.get(node, ())
        waiting = [d.id for d in below if d.id not in after]
        if waiting:
            stack.extend(waiting)
            continue
        stack.pop()
        if node not in after:
            after[node] = max((estimate(d.capability) + after[d.id] for d in below), default=0.0)
    return after[step_id]
