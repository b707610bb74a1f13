"""Offload under load: plan fragments that one worker runs step to step.

When the scheduler is loaded, a step that gets a worker slot may take with
it the steps that follow it in the plan and that the same worker can run:
the worker runs them in process, each as soon as the steps it comes after
have succeeded, with its input completed from their outputs
(`WorkerService.ExecuteStream`, `after` and `wiring`), and answers each on
its own. The scheduler saves a queue pass, a slot grant and a round trip
per step; each step is still recorded, traced, counted and checked as if
it had been dispatched alone, and a step the fragment did not finish is
dispatched alone afterwards, with the usual retries.

"Loaded" is the event loop's own measure (`LoopLoad`): its thread busy
most of the time (then every step dispatched alone takes CPU from every
other), or a timer running late (then every dispatch and every answer is
late by as much, whatever the cause: its own CPU, or CPU the machine's
other processes take).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentmesh.scheduler.calls import NO_DEFAULT, Literal, Wire
from agentmesh.scheduler.plans import Plan, Step, resolve_bindings
from agentmesh.server.refs import MISSING, resolve_ref

AUTO, OFF, ALWAYS = "auto", "off", "always"
MODES = (AUTO, OFF, ALWAYS)


class LoopLoad:
    """How loaded the event loop is, smoothed: how busy its thread is, and how late a
    periodic timer fires.

    Every `interval` seconds a timer measures the share of the wall time the
    loop's thread spent on the CPU (`busy`) and how late it ran (`lag`);
    each is an exponential average with weight `smoothing`. The timer runs
    only between `start` and `stop`; `observe` takes measurements made
    elsewhere (the tests' way in).
    """

    def __init__(
        self,
        busy_threshold: float = 0.8,
        lag_threshold: float = 0.005,
        *,
        interval: float = 0.05,
        smoothing: float = 0.1,
    ) -> None:
        #: The busy share, and the lag (seconds), at or above which the loop is loaded.
        self.busy_threshold = busy_threshold
        self.lag_threshold = lag_threshold
        self.interval = interval
        self.smoothing = smoothing
        self.busy = 0.0
        self.lag = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def loaded(self) -> bool:
        return self.busy >= self.busy_threshold or self.lag >= self.lag_threshold

    def observe(self, busy: float, lag: float) -> None:
        self.busy += self.smoothing * (min(max(busy, 0.0), 1.0) - self.busy)
        self.lag += self.smoothing * (max(lag, 0.0) - self.lag)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._schedule(loop, loop.time(), time.thread_time())

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float, cpu: float) -> None:
        due = now + self.interval
        self._timer = loop.call_at(due, self._tick, loop, due, now, cpu)

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float, since: float, cpu: float) -> None:
        now, used = loop.time(), time.thread_time()
        self.observe((used - cpu) / max(now - since, 1e-9), now - due)
        self._schedule(loop, now, used)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass
class Offload:
    """Whether a slot's step takes its followers with it: `mode`, and the loop's load."""

    mode: str = AUTO
    load: LoopLoad = field(default_factory=LoopLoad)
    #: Most steps in one fragment, its first included.
    max_steps: int = 8

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"AGENTMESH_OFFLOAD must be one of {', '.join(MODES)}, not {self.mode!r}"
            )

    @property
    def active(self) -> bool:
        return self.mode == ALWAYS or (self.mode == AUTO and self.load.loaded)


def dependents(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Each step's direct dependents, in plan order."""
    found: dict[str, list[str]] = {s.id: [] for s in plan.steps}
    for step in plan.steps:
        for dep in step.depends_on:
            found[dep].append(step.id)
    return {k: tuple(v) for k, v in found.items()}


def select(
    plan: Plan,
    head: str,
    following: Mapping[str, Sequence[str]],
    *,
    can_follow: Callable[[Step], bool],
    settled: Callable[[str], bool],
    limit: int,
) -> list[Step]:
    """The steps that can follow `head` in its fragment, in an order that runs each after
    the steps it depends on.

    A step joins when `can_follow` says so (not started, one the worker can
    run as the dispatcher would have chosen it) and every step it depends on
    is either in the fragment or `settled` (finished as the step needs). At
    most `limit` steps join.
    """
    by_id = {s.id: s for s in plan.steps}
    members = {head}
    chosen: list[Step] = []
    frontier = list(following.get(head, ()))
    while frontier and len(chosen) < limit:
        candidate = by_id[frontier.pop(0)]
        if candidate.id in members:
            continue
        if not all(d in members or settled(d) for d in candidate.depends_on):
            continue  # it may still join once another member that it needs has
        if not can_follow(candidate):
            continue
        members.add(candidate.id)
        chosen.append(candidate)
        # Its dependents, including one passed over before this member joined.
        frontier.extend(following.get(candidate.id, ()))
    return chosen


def wire(
    step: Step,
    members: Iterable[str],
    request: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> tuple[dict[str, Any], tuple[Wire, ...]]:
    """A follower's input as far as the scheduler can resolve it, and the fields the worker
    completes from the outputs of the fragment's steps (`members`).

    A binding that names no member resolves here, as `resolve_bindings`
    would; one that does becomes a Wire whose other references are resolved
    here to values (or dropped when they resolve to nothing), in order.
    """
    inside = set(members)
    data: dict[str, Any] = {}
    wires: list[Wire] = []
    for name, binding in step.inputs.items():
        if not any(_member(ref) in inside for ref in binding.refs):
            data.update(resolve_bindings({name: binding}, request, outputs))
            continue
        sources: list[str | Literal] = []
        for ref in binding.refs:
            if _member(ref) in inside:
                sources.append(ref)
            elif (value := resolve_ref(ref, request, outputs)) is not MISSING:
                sources.append(Literal(value))
        default = NO_DEFAULT if binding.collect or binding.value is None else binding.value
        wires.append(Wire(name, tuple(sources), binding.collect, default))
    return data, tuple(wires)


def _member(ref: str) -> str | None:
    parts = ref.split(".")
    return parts[1] if parts[0] == "steps" and len(parts) > 1 else None
