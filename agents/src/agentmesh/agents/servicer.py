"""WorkerService: protobuf in, the worker core, protobuf out, errors mapped by `handlers`.

`Execute` runs one subtask per call. `ExecuteStream` runs many on one
stream: each subtask of a message becomes a task of its own, and every
result ready in one loop turn leaves in one message, so the per-message
cost of gRPC is paid once per batch. A message's steps with `after` (a plan
fragment) wait in their tasks for the steps they come after (`fragments.py`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from grpc import aio

from agentmesh.agents.checks import check_ids
from agentmesh.agents.convert import outcome_to_proto, subtask_from_proto
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.fragments import Fragment, Step
from agentmesh.errors import Cancelled
from agentmesh.server import telemetry
from agentmesh.server.handlers import Undecodable, ours, streaming, unary
from agentmesh.status import to_status_proto
from agentmesh.v1 import worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
EXECUTE = f"{SERVICE_NAME}/Execute"
EXECUTE_STREAM = f"{SERVICE_NAME}/ExecuteStream"
Context = aio.ServicerContext[Any, Any]
Metadata = Iterable[tuple[str, str | bytes]] | None


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Serves Execute and ExecuteStream on a `WorkerCore`; a call's deadline is the subtask's."""

    def __init__(self, core: WorkerCore) -> None:
        self.core = core
        #: Subtasks taken from streams whose results are not yet written back.
        self._unanswered = 0
        self._answered = asyncio.Event()
        self._answered.set()

    async def answered(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until every subtask taken from a stream has its
        result written back: a draining worker leaves only after its answers."""
        try:
            await asyncio.wait_for(self._answered.wait(), timeout)
        except TimeoutError:
            log.warning("leaving with unanswered subtasks", extra={"subtasks": self._unanswered})

    def _count(self, change: int) -> None:
        self._unanswered += change
        if self._unanswered:
            self._answered.clear()
        else:
            self._answered.set()

    @unary
    async def Execute(
        self, request: worker_pb2.ExecuteRequest, context: Context
    ) -> worker_pb2.ExecuteResponse:
        left = context.time_remaining()
        return await self._execute(EXECUTE, request, context.invocation_metadata(), left)

    @streaming
    async def ExecuteStream(
        self,
        # RejectUndecodable hands over a message that did not decode as an Undecodable.
        request_iterator: AsyncIterator[worker_pb2.ExecuteStreamRequest | Undecodable],
        context: Context,
    ) -> AsyncIterator[worker_pb2.ExecuteStreamResponse]:
        batch = _Batch()
        running: dict[int, Step] = {}
        # This stream's share of `_unanswered`: what it took less what it wrote back.
        taken = written = 0

        async def run(
            item: worker_pb2.ExecuteStreamSubtask, fragment: Fragment | None = None
        ) -> worker_pb2.ExecuteResponse | None:
            """Run and answer one subtask; its response (None if it failed), for the steps
            of a fragment that wait for it."""
            try:
                if fragment is None:
                    left = item.timeout.ToNanoseconds() / 1e9 if item.HasField("timeout") else None
                    response = await self._execute(
                        EXECUTE_STREAM, item.request, item.trace_context.items(), left
                    )
                else:
                    response = await fragment.run(item, execute_wired)
            except asyncio.CancelledError:
                batch.add(_stopped(item.id))
                return None
            except Exception as error:
                batch.add(worker_pb2.ExecuteStreamResult(id=item.id, error=_status(error)))
                return None
            batch.add(worker_pb2.ExecuteStreamResult(id=item.id, response=response))
            return response

        execute_wired = functools.partial(self._execute, EXECUTE_STREAM)

        def settled(stream_id: int, task: Step) -> None:
            running.pop(stream_id, None)
            if task.cancelled():  # stopped before it started: answered all the same
                batch.add(_stopped(stream_id))

        async def read() -> None:
            nonlocal taken
            async for message in request_iterator:
                if isinstance(message, Undecodable):
                    raise message.refuse()
                self._count(len(message.subtasks))
                taken += len(message.subtasks)
                followers: list[worker_pb2.ExecuteStreamSubtask] = []
                for item in message.subtasks:
                    # A step of a plan fragment (its wiring is read only with `after`): the
                    # one look a plain subtask pays for fragments.
                    if item.after:
                        followers.append(item)
                        continue
                    task = asyncio.create_task(run(item))
                    running[item.id] = task
                    task.add_done_callback(functools.partial(settled, item.id))
                if followers:
                    fragment = Fragment(followers, self.core.clock, self.core.worker_id)
                    for item in followers:
                        task = asyncio.create_task(run(item, fragment))
                        running[item.id] = task
                        task.add_done_callback(functools.partial(settled, item.id))
                    fragment.know(message.subtasks, running)  # before any of them starts
                # Cancels after starts: a message may stop a subtask it starts.
                for stream_id in message.cancel:
                    stopping = running.get(stream_id)
                    if stopping is not None:
                        stopping.cancel()
            # The scheduler sends no more: answer what runs, then end the stream.
            await asyncio.gather(*running.values(), return_exceptions=True)

        reader = asyncio.create_task(read())
        reader.add_done_callback(lambda _: batch.wake())
        try:
            while True:
                await batch.ready.wait()
                batch.ready.clear()
                results = batch.take()
                if results:
                    yield worker_pb2.ExecuteStreamResponse(results=results)
                    self._count(-len(results))  # written: the generator resumes after
                    written += len(results)
                if reader.done() and not batch.pending:
                    reader.result()  # a refused message ends the stream with its status
                    return
        finally:
            # The stream is gone (or ended): its subtasks are cancelled calls, which the
            # core stops or, when the scheduler is gone, finishes and keeps.
            reader.cancel()
            for task in list(running.values()):
                task.cancel()
            # Nobody can be answered now: running, waiting to leave, or taken by a write
            # the stream's end interrupted (the generator never resumed after its yield).
            self._count(written - taken)

    async def _execute(
        self,
        method: str,
        request: worker_pb2.ExecuteRequest,
        metadata: Metadata,
        left: float | None,
        wired: dict[str, Any] | None = None,
    ) -> worker_pb2.ExecuteResponse:
        """One subtask, as a span (named after the RPC that brought it) of the caller's
        trace; `left` is the time it may take; `wired` fields (a fragment step's) are set
        over its input before it is checked."""
        with telemetry.server_span(
            method,
            metadata,
            **{
                telemetry.REQUEST_ID: request.request_id,
                telemetry.SUBTASK_ID: request.subtask_id,
                telemetry.CAPABILITY: request.capability,
                telemetry.WORKER_ID: self.core.worker_id,
                telemetry.ATTEMPT: request.attempt,
            },
        ) as span:
            check_ids(request)  # before the input is read: missing ids are the first refusal
            subtask = subtask_from_proto(request)
            if wired:
                subtask.input.update(wired)
            deadline = None if left is None else self.core.clock.now() + left
            outcome = await self.core.execute(subtask, deadline)
            span.set_attribute("agentmesh.replayed", outcome.replayed)
            return outcome_to_proto(outcome)


class _Batch:
    """Results waiting to leave on the stream, and the event that wakes the writer."""

    def __init__(self) -> None:
        self.pending: list[worker_pb2.ExecuteStreamResult] = []
        self.ready = asyncio.Event()

    def add(self, result: worker_pb2.ExecuteStreamResult) -> None:
        self.pending.append(result)
        self.ready.set()

    def wake(self) -> None:
        self.ready.set()

    def take(self) -> list[worker_pb2.ExecuteStreamResult]:
        taken, self.pending = self.pending, []
        return taken


def _status(error: BaseException) -> worker_pb2.ExecuteStatus:
    """The status a failed subtask is answered with, as Execute's abort would give it."""
    status = worker_pb2.ExecuteStatus()
    status.ParseFromString(to_status_proto(ours(error)).SerializeToString())
    return status


def _stopped(stream_id: int) -> worker_pb2.ExecuteStreamResult:
    """The answer to a subtask the scheduler stopped."""
    result = worker_pb2.ExecuteStreamResult(id=stream_id)
    result.error.CopyFrom(_status(Cancelled("the scheduler stopped the subtask")))
    return result
