"""Plan fragments on ExecuteStream: steps of one message that run after others of it.

A step with `after` (`ExecuteStreamSubtask`) waits until each step it names,
of the same request and in the same message, has succeeded; then its input
is completed from their outputs (`wiring.py`) and it runs as any subtask
does (the servicer's `_execute`: checks, idempotency, span, deadline). Its
timeout counts from the message's arrival, so it covers the wait. A step
that cannot run (a step it comes after failed, was stopped, is not in the
message, or waits on a cycle; or its wiring is invalid) is answered ABORTED,
reason FRAGMENT_BROKEN, without running: the scheduler then dispatches it on
its own.

Only messages that hold such steps build a `Fragment`: plain subtasks pay
nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from agentmesh.agents.checks import check_ids
from agentmesh.agents.convert import wiring_from_proto
from agentmesh.agents.wiring import resolve_wiring, stuck, wiring_violations
from agentmesh.errors import Aborted, DeadlineExceeded, InvalidArgument
from agentmesh.server.clock import Clock
from agentmesh.v1 import worker_pb2
from agentmesh.wire import struct_to_dict

log = logging.getLogger(__name__)

Step = asyncio.Task[worker_pb2.ExecuteResponse | None]
"""A subtask's task on the stream: its response, or None when it failed or was stopped."""

Execute = Callable[
    [worker_pb2.ExecuteRequest, Iterable[tuple[str, str]], float | None, dict[str, Any]],
    Awaitable[worker_pb2.ExecuteResponse],
]
"""The servicer's way to run one subtask: request, trace context, seconds left, wired fields."""

Key = tuple[str, str]

BROKEN = "FRAGMENT_BROKEN"


def _key(item: worker_pb2.ExecuteStreamSubtask) -> Key:
    return (item.request.request_id, item.request.subtask_id)


class Fragment:
    """The steps of one ExecuteStream message that others wait for, and the clock of their
    deadlines. Built before the steps that wait start, told every step's task after."""

    def __init__(
        self, followers: Sequence[worker_pb2.ExecuteStreamSubtask], clock: Clock, worker_id: str
    ) -> None:
        self._clock = clock
        self._worker_id = worker_id
        self.arrival = clock.now()
        """When the message arrived: the steps' timeouts count from it."""
        self._steps: dict[Key, Step] = {}
        # Steps on a cycle of `after` would wait for each other forever.
        self._stuck = stuck({_key(i): [(_key(i)[0], name) for name in i.after] for i in followers})

    def know(
        self, items: Iterable[worker_pb2.ExecuteStreamSubtask], tasks: Mapping[int, Step]
    ) -> None:
        """Every step of the message, by its (request id, subtask id), with its task."""
        self._steps = {_key(item): tasks[item.id] for item in items}

    async def run(
        self, item: worker_pb2.ExecuteStreamSubtask, execute: Execute
    ) -> worker_pb2.ExecuteResponse:
        """Wait for the steps `item` comes after, then run it with its input wired."""
        check_ids(item.request)  # missing ids are the first refusal, as for any subtask
        try:
            wiring = wiring_from_proto(item.wiring)
            violations = wiring_violations(item.after, wiring)
        except InvalidArgument as error:
            violations = list(error.violations)
        if violations:
            # The scheduler's fragment is at fault, not the request's input: the step is
            # handed back to be dispatched on its own, as any step that cannot run here.
            log.warning(
                "a fragment step's wiring is invalid", extra={"violations": len(violations)}
            )
            raise self._broken(
                item,
                "",
                "its wiring is invalid: "
                + "; ".join(f"{v.field}: {v.description}" for v in violations[:5]),
            )
        request_id = item.request.request_id
        if _key(item) in self._stuck:
            raise self._broken(item, "", "it waits, through `after`, on a cycle of steps")
        heads: dict[Step, str] = {}
        for name in item.after:
            head = self._steps.get((request_id, name))
            if head is None:
                raise self._broken(
                    item, name, f"{name!r} of request {request_id!r} is not in the same message"
                )
            heads[head] = name
        deadline = (
            self.arrival + item.timeout.ToNanoseconds() / 1e9 if item.HasField("timeout") else None
        )
        await self._wait(item, heads, deadline)
        # Fresh dicts for each step: what it is wired from is its own to change.
        outputs = {name: _output(head) for head, name in heads.items()}
        left = None if deadline is None else deadline - self._clock.now()
        return await execute(
            item.request, item.trace_context.items(), left, resolve_wiring(wiring, outputs)
        )

    async def _wait(
        self,
        item: worker_pb2.ExecuteStreamSubtask,
        heads: Mapping[Step, str],
        deadline: float | None,
    ) -> None:
        """Until every head succeeded; Aborted as soon as one did not, DeadlineExceeded at the
        deadline."""
        pending: set[Step] = set(heads)
        while pending:
            left = None if deadline is None else deadline - self._clock.now()
            if left is not None and left <= 0:
                raise self._late(item, [heads[h] for h in pending])
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for head in done:
                if _response(head) is None:
                    name = heads[head]
                    raise self._broken(
                        item, name, f"{name!r}, which it comes after, did not succeed"
                    )

    def _broken(self, item: worker_pb2.ExecuteStreamSubtask, after: str, why: str) -> Aborted:
        return Aborted(
            f"subtask {item.request.subtask_id!r} of request {item.request.request_id!r} was not "
            f"run on worker {self._worker_id}: {why}",
            reason=BROKEN,
            metadata={"capability": item.request.capability, "after": after},
        )

    def _late(self, item: worker_pb2.ExecuteStreamSubtask, waiting: list[str]) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"subtask {item.request.subtask_id!r} of request {item.request.request_id!r} passed "
            f"its deadline on worker {self._worker_id} waiting for {', '.join(sorted(waiting))}",
            metadata={"capability": item.request.capability},
        )


def _output(step: Step) -> dict[str, Any]:
    """A step's output, once it succeeded."""
    response = _response(step)
    assert response is not None, "only a step that succeeded gives its output"
    return struct_to_dict(response.output, "output")


def _response(step: Step) -> worker_pb2.ExecuteResponse | None:
    """A finished step's response; None when it failed or was stopped (before it started too)."""
    if step.cancelled() or step.exception() is not None:
        return None
    return step.result()
