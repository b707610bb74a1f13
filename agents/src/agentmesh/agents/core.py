"""The worker core: runs subtasks on a backend, once each, within the worker's capacity.

Plain asyncio with an injected clock; no gRPC and no protobuf (the
servicer converts, `agents/convert.py`). A worker runs each subtask once:
the result of a (request id, subtask id) it has finished is kept (a
bounded window, in memory or in a SQLite file that outlives the process,
`results.py`) and returned again on a repeat, and a repeat of a subtask
still running waits for that run; the same ids with another capability or
input are refused. Concurrency is bounded by the capacity; subtasks beyond
it wait inside the worker and are reported as its queue. A call past its
deadline fails with DeadlineExceeded and its run stops. A subtask whose
caller is cancelled stops if the scheduler is alive, and otherwise
finishes and is kept for the restarted scheduler's repeat (`_settle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry

from agentmesh.agents import calls
from agentmesh.agents.backend import Backend, BackendResult
from agentmesh.agents.checks import check_ids, check_input, check_same_work
from agentmesh.agents.results import Key, MemoryResults, ResultStore, Stored, input_digest
from agentmesh.agents.subtask import Health, Outcome, Subtask
from agentmesh.errors import AgentmeshError, DeadlineExceeded, Unavailable, Unimplemented
from agentmesh.server import logs, telemetry
from agentmesh.server.clock import Clock, SystemClock
from agentmesh.server.estimators import ErrorRate, PeakEwma
from agentmesh.server.metrics import WorkerMetrics
from agentmesh.server.skills import SKILLS, Skill, output_violations

log = logging.getLogger(__name__)

DETACHED_LIMIT = 60.0
"""Seconds a subtask called without a deadline may run on once its caller is gone."""

Alive = Callable[[], Awaitable[bool]]
"""Whether the scheduler answers now (`SchedulerLink.alive`, with its timeout)."""


async def _never_heard() -> bool:
    return False


@dataclass(frozen=True)
class _Running:
    """A subtask running now, with the work it was asked for."""

    capability: str
    digest: str
    task: asyncio.Task[Outcome]


class WorkerCore:
    """Runs subtasks for one worker: `execute()`, `health()`, then `drain()` and `close()`."""

    def __init__(
        self,
        backend: Backend,
        *,
        worker_id: str,
        skills: frozenset[str] | None = None,
        catalogue: Mapping[str, Skill] | None = None,
        capacity: int = 4,
        results: ResultStore | None = None,
        clock: Clock | None = None,
        alive: Alive = _never_heard,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """`skills` default to all the backend runs; `alive` tells why a call was cancelled.

        `catalogue` is every skill the worker knows (default: the built-in
        `SKILLS`; a worker with skills of its own adds them, `runtime.py`).
        """
        known = SKILLS if catalogue is None else catalogue
        offered = set(backend.capabilities()) if skills is None else set(skills)
        unknown = offered - set(known)
        if unknown:
            raise ValueError(f"unknown skills {sorted(unknown)}; known: {sorted(known)}")
        unable = offered - set(backend.capabilities())
        if unable:
            raise ValueError(f"the {backend.name} backend cannot run {sorted(unable)}")
        self.backend = backend
        self.worker_id = worker_id
        self.skills: Mapping[str, Skill] = MappingProxyType({n: known[n] for n in sorted(offered)})
        """The skills this worker offers, by name, with their contracts: what it registers,
        and what its inputs and outputs are checked against."""
        self.capacity = capacity
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or WorkerMetrics(CollectorRegistry())
        self.draining = False
        """Set by `drain()`: new subtasks are refused, repeats still answered."""
        self._alive = alive
        self._results: ResultStore = results if results is not None else MemoryResults(10_000)
        self._slots = asyncio.Semaphore(capacity)
        self._in_flight = 0
        self._waiting = 0
        self._running: dict[Key, _Running] = {}
        self._settling: set[asyncio.Task[None]] = set()
        now = self.clock.now()
        self._latency = PeakEwma(0.05, 10.0, now)
        self._errors = ErrorRate(30.0, now)

    # -- Execute ---------------------------------------------------------------------

    async def execute(self, subtask: Subtask, deadline: float | None = None) -> Outcome:
        """Run one subtask, or answer a repeat of it; `deadline` is on the core's clock.

        A repeat must be the same work: the same capability and input under
        the same ids. If the caller is cancelled while the subtask runs, the
        subtask goes on detached until `_settle` knows why (see `link.py`).
        """
        logs.REQUEST_ID.set(subtask.request_id)
        logs.SUBTASK_ID.set(subtask.subtask_id)
        check_ids(subtask)
        key = (subtask.request_id, subtask.subtask_id)
        digest = input_digest(subtask.input)
        stored = self._results.get(key)
        if stored is not None:
            check_same_work(subtask, digest, stored.capability, stored.input_digest, "finished")
            self.metrics.replays.inc()
            return stored.outcome.as_replayed()
        running = self._running.get(key)
        if running is not None:
            check_same_work(subtask, digest, running.capability, running.digest, "running")
            self.metrics.replays.inc()
            # Another call's run: this call's deadline ends the wait, not the run.
            outcome = await self._within_deadline(subtask, running.task, deadline, stop=False)
            return outcome.as_replayed()
        if self.draining:
            raise Unavailable(f"worker {self.worker_id} is draining", reason="DRAINING")
        if subtask.capability not in self.skills:
            raise Unimplemented(
                f"worker {self.worker_id} does not offer {subtask.capability!r}; "
                f"it offers {', '.join(sorted(self.skills))}",
                reason="CAPABILITY_NOT_OFFERED",
            )
        skill = self.skills[subtask.capability]
        check_input(skill, subtask.input)
        if deadline is not None and deadline <= self.clock.now():
            raise self._past_deadline(subtask)
        # The run's task inherits the call: a backend that needs the ids and deadline reads it.
        calls.CURRENT.set(calls.SubtaskCall(subtask, deadline, self.clock))
        task = asyncio.create_task(self._run_and_keep(key, skill.name, digest, subtask.input))
        self._running[key] = _Running(skill.name, digest, task)
        try:
            return await self._within_deadline(subtask, task, deadline, stop=True)
        except asyncio.CancelledError:
            if not task.done():
                settle = asyncio.create_task(self._settle(task, deadline))
                self._settling.add(settle)
                settle.add_done_callback(self._settling.discard)
            raise

    async def _within_deadline(
        self,
        subtask: Subtask,
        task: asyncio.Task[Outcome],
        deadline: float | None,
        *,
        stop: bool,
    ) -> Outcome:
        """The task's outcome, or DeadlineExceeded at the deadline (stopping the task if `stop`).

        Being cancelled does not cancel the task: the caller decides (`_settle`).
        """
        if deadline is None:
            return await asyncio.shield(task)
        if not await self._wait(task, deadline - self.clock.now()):
            if stop:
                task.cancel()
            raise self._past_deadline(subtask)
        return task.result()

    def _past_deadline(self, subtask: Subtask) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"subtask {subtask.subtask_id!r} of request {subtask.request_id!r} passed its "
            f"deadline on worker {self.worker_id}",
            metadata={"capability": subtask.capability},
        )

    async def _wait(self, task: asyncio.Task[Outcome], seconds: float) -> bool:
        """Wait for the task at most `seconds` on the clock; whether it is done."""
        if task.done():
            return True
        timer = asyncio.ensure_future(self.clock.sleep(max(seconds, 0.0)))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return task.done()

    async def _run_and_keep(
        self, key: Key, capability: str, digest: str, data: dict[str, Any]
    ) -> Outcome:
        try:
            outcome = await self._run(capability, data)
            # Stored before the reply: a repeat after a lost reply, or a restart, is answered
            # from it; so is the restarted scheduler's repeat of a subtask finished detached.
            self._results.put(key, Stored(capability, digest, outcome))
            return outcome
        finally:
            self._running.pop(key, None)

    async def _settle(self, task: asyncio.Task[Outcome], deadline: float | None) -> None:
        """A running subtask's caller was cancelled: stop it, or finish it if the scheduler is gone.

        A live scheduler cancelled it on purpose (the request was cancelled,
        a hedge won, the worker was evicted): it stops. A scheduler that is
        gone cancelled every call on its connection by dying; the subtask
        finishes, within the call's deadline, and its result is stored for
        the restarted scheduler's repeat.
        """
        if await self._alive():
            task.cancel()
            return
        left = DETACHED_LIMIT if deadline is None else deadline - self.clock.now()
        log.warning(
            "the scheduler is gone; finishing the subtask to keep its result",
            extra={"seconds_left": round(left, 3)},
        )
        await self._wait(task, left)
        task.cancel()  # past the call's deadline nobody will ask for it

    async def _run(self, capability: str, data: dict[str, Any]) -> Outcome:
        skill = self.skills[capability]
        self._waiting += 1
        self.metrics.queue_length.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue_length.set(self._waiting)
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        started = self.clock.now()
        code = "OK"
        try:
            result = await self._call_backend(skill, data)
            violations = output_violations(skill, result.output)
            if violations:
                raise AgentmeshError(
                    f"{self.backend.name} produced output for {capability} that fails its schema: "
                    + "; ".join(f"{f}: {d}" for f, d in violations[:5]),
                    reason="OUTPUT_INVALID",
                )
        except AgentmeshError as error:
            code = error.code_name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            self._slots.release()
            self._in_flight -= 1
            now = self.clock.now()
            elapsed = now - started
            self.metrics.in_flight.set(self._in_flight)
            self.metrics.subtasks_of(capability, code).inc()
            self.metrics.subtask_seconds_of(capability).observe(elapsed)
            if code != "CANCELLED":
                self._errors.observe(code != "OK", now)
            if code == "OK":
                self._latency.observe(elapsed, now)
        return Outcome(result.output, result.usage, result.model, elapsed)

    async def _call_backend(self, skill: Skill, data: dict[str, Any]) -> BackendResult:
        """The backend call, as a span: a GenAI model call when there is a model."""
        model = self.backend.model
        attributes: dict[str, Any] = {"agentmesh.backend": self.backend.name}
        if model:
            attributes |= {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self.backend.name,
                "gen_ai.request.model": model,
            }
        name = f"chat {model}" if model else f"{self.backend.name} {skill.name}"
        with telemetry.span(name, attributes=attributes) as span:
            result = await self.backend.run(skill, data)
            if model:
                span.set_attribute("gen_ai.response.model", result.model or model)
                span.set_attribute("gen_ai.usage.input_tokens", result.usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.usage.output_tokens)
            return result

    # -- health and lifecycle ----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Subtasks holding a slot now."""
        return self._in_flight

    def health(self) -> Health:
        """The load and health the worker's next heartbeat reports."""
        return Health(
            in_flight=self._in_flight,
            capacity=self.capacity,
            queue_length=self._waiting,
            latency_estimate=self._latency.estimate(),
            error_rate=self._errors.rate(self.clock.now()),
            draining=self.draining,
        )

    async def drain(self, grace: float) -> None:
        """Refuse new subtasks, let the running ones finish for up to `grace` seconds.

        Subtasks still running detached (their caller gone) are given up
        with the process.
        """
        self.draining = True
        pending: set[asyncio.Future[Any]] = {r.task for r in self._running.values()}
        if pending:
            timer = asyncio.ensure_future(self.clock.sleep(grace))
            try:
                while pending and not timer.done():
                    done, _ = await asyncio.wait(
                        pending | {timer}, return_when=asyncio.FIRST_COMPLETED
                    )
                    pending -= done
            finally:
                timer.cancel()
        for settle in list(self._settling):
            settle.cancel()

    def close(self) -> None:
        """Close the store of finished subtasks."""
        self._results.close()
