"""The dispatcher's way to workers: WorkerService over gRPC.

A worker that declares it serves ExecuteStream (`WorkerSpec.execute_stream`)
gets one long-lived stream: every subtask ready for it in one loop turn
leaves in one message, and its results come back the same way, so the
per-message cost of gRPC is paid once per batch. A worker that also serves
fragments may get, with a subtask, the steps that follow it (`Follower`,
see `fragments`), wired to its output. Any other worker gets one
unary Execute call per subtask. Both give the dispatcher the same results
and the same errors.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import status_pb2
from grpc import aio

from agentmesh.certfiles import CertificateFiles, RenewingChannel
from agentmesh.errors import AgentmeshError, DeadlineExceeded, Unavailable
from agentmesh.scheduler.calls import (
    NO_DEFAULT,
    ExecuteResult,
    Follower,
    Literal,
    SubtaskCall,
    Wire,
)
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.server import telemetry
from agentmesh.status import error_from_status, from_rpc_error
from agentmesh.tls import TlsConfig, worker_name
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct, difficulty_to_proto, struct_to_dict, usage_from_proto

log = logging.getLogger(__name__)


def _stub(channel: aio.Channel) -> worker_pb2_grpc.WorkerServiceAsyncStub:
    return worker_pb2_grpc.WorkerServiceStub(channel)


@dataclass
class _Link:
    """What the transport keeps for one worker: its channel, and its stream once used."""

    address: str
    channel: RenewingChannel[worker_pb2_grpc.WorkerServiceAsyncStub]
    stream: _Stream | None = None

    async def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        await self.channel.close()


class GrpcTransport:
    """One channel per worker, opened on first use and closed when it leaves.

    A worker that registers again under the same id at another address (it
    restarted on a new port) gets a new channel. With TLS on, the channel presents the
    scheduler's certificate and accepts only a server certificate that names the worker
    id it dials (`<worker_id>.worker.<domain>`), whatever its address. When the
    scheduler's certificate files are renewed, the next call or stream to a worker goes
    over a new channel with the new certificate (`certfiles.RenewingChannel`); a stream
    already open stays on its connection until it ends.
    """

    def __init__(self, tls: TlsConfig | None = None) -> None:
        self._links: dict[str, _Link] = {}
        self._tls = tls
        # One look at the files serves every worker's channel (and one warning).
        self._files = CertificateFiles(tls) if tls is not None and tls.enabled else None

    async def _link(self, worker: WorkerRecord) -> _Link:
        link = self._links.get(worker.worker_id)
        if link is not None and link.address != worker.spec.address:
            await self.forget(worker.worker_id)
            link = None
        if link is None:
            try:
                channel = RenewingChannel(
                    worker.spec.address,
                    self._tls,
                    _stub,
                    files=self._files,
                    server_name=worker_name(worker.worker_id, self._tls.domain)
                    if self._tls is not None
                    else "",
                )
            except Exception as error:  # an address grpc cannot use
                raise Unavailable(
                    f"cannot reach worker {worker.worker_id} at {worker.spec.address!r}: {error}",
                    reason="WORKER_UNREACHABLE",
                ) from None
            link = _Link(worker.spec.address, channel)
            self._links[worker.worker_id] = link
        return link

    async def execute(
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        timeout: float,
        followers: Sequence[Follower] = (),
    ) -> ExecuteResult:
        request = _request(call, attempt)
        link = await self._link(worker)
        timeout = max(timeout, 0.001)
        if worker.spec.execute_stream:
            if link.stream is None or link.stream.broken:
                # A new stream may need a new handshake: with the files as they are now.
                link.channel.renew(force=True)
                stub, release = link.channel.acquire()
                try:
                    link.stream = _Stream(stub, release, worker.worker_id)
                except BaseException:
                    release()
                    raise
            return await link.stream.execute(request, timeout, followers)
        if followers:
            raise ValueError(f"worker {worker.worker_id} runs no fragments: no ExecuteStream")
        with link.channel.hold() as stub:
            try:
                response = await stub.Execute(
                    request, timeout=timeout, metadata=telemetry.outgoing_metadata()
                )
            except grpc.RpcError as error:
                failure = from_rpc_error(error)
                if failure.code_name == "UNAVAILABLE":  # perhaps a handshake: look at the files
                    link.channel.renew(force=True)
                raise _worker_error(failure, worker.worker_id) from None
        return _result(response)

    async def forget(self, worker_id: str) -> None:
        link = self._links.pop(worker_id, None)
        if link is not None:
            await link.close()

    async def close(self) -> None:
        for worker_id in list(self._links):
            await self.forget(worker_id)


class _Stream:
    """One ExecuteStream call to a worker: subtasks out in batches, results in.

    `execute` queues a subtask and waits for its result; a writer task sends
    everything queued since its last write as one message, and a reader task
    hands each result to its waiter. A subtask's deadline is a timer on the
    loop, not a task; a waiter that is cancelled (a hedge lost, the request
    was cancelled) tells the worker to stop. When the stream breaks, every
    waiter fails UNAVAILABLE (retryable on another worker) and the next
    subtask opens a new stream.
    """

    def __init__(
        self,
        stub: worker_pb2_grpc.WorkerServiceAsyncStub,
        release: Callable[[], None],
        worker_id: str,
    ) -> None:
        """`release` lets go of the channel of `stub` when the stream ends."""
        self.worker_id = worker_id
        self.broken = False
        self._release = release
        self._call = stub.ExecuteStream()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[ExecuteResult]] = {}
        self._outbox: list[worker_pb2.ExecuteStreamSubtask] = []
        self._cancels: list[int] = []
        self._wake = asyncio.Event()
        self._tasks = (
            asyncio.create_task(self._write(), name=f"execute-stream-write {worker_id}"),
            asyncio.create_task(self._read(), name=f"execute-stream-read {worker_id}"),
        )

    async def execute(
        self,
        request: worker_pb2.ExecuteRequest,
        timeout: float,
        followers: Sequence[Follower] = (),
    ) -> ExecuteResult:
        """The worker's result for one subtask, or the error it failed with; `followers`
        leave in the same message, each answered through its own `done`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ExecuteResult] = loop.create_future()
        stream_id, timer = self._send(request, timeout, future)
        for follower in followers:
            self._send_follower(follower)
        try:
            return await future
        except asyncio.CancelledError:
            self._stop(stream_id)
            raise
        finally:
            timer.cancel()
            self._waiting.pop(stream_id, None)

    def _send(
        self,
        request: worker_pb2.ExecuteRequest,
        timeout: float,
        future: asyncio.Future[ExecuteResult],
        after: Sequence[str] = (),
        wiring: Sequence[Wire] = (),
    ) -> tuple[int, asyncio.TimerHandle]:
        """Queue a subtask for the next message; its id, and the timer of its deadline."""
        stream_id = next(self._ids)
        item = worker_pb2.ExecuteStreamSubtask(
            id=stream_id, request=request, after=after, wiring=[_wired(w) for w in wiring]
        )
        item.timeout.FromNanoseconds(int(timeout * 1e9))
        if telemetry.recording():
            item.trace_context.update(telemetry.outgoing_metadata())
        self._waiting[stream_id] = future
        self._outbox.append(item)
        self._wake.set()
        timer = asyncio.get_running_loop().call_later(timeout, self._expire, stream_id, timeout)
        return stream_id, timer

    def _send_follower(self, follower: Follower) -> None:
        request = _request(follower.call, follower.attempt)
        timeout = max(follower.timeout, 0.001)
        stream_id, timer = self._send(
            request, timeout, follower.done, follower.after, follower.wiring
        )
        follower.stop = functools.partial(self._stop, stream_id)

        def settled(done: asyncio.Future[ExecuteResult]) -> None:
            timer.cancel()
            if not done.cancelled():  # a cancelled follower is stopped by `stop`
                self._waiting.pop(stream_id, None)

        follower.done.add_done_callback(settled)

    def _stop(self, stream_id: int) -> None:
        """Take the subtask back if it is not sent yet; otherwise tell the worker to stop it."""
        if self._waiting.pop(stream_id, None) is None or self.broken:
            return
        for index, item in enumerate(self._outbox):
            if item.id == stream_id:
                del self._outbox[index]
                return
        self._cancels.append(stream_id)
        self._wake.set()

    def _expire(self, stream_id: int, timeout: float) -> None:
        future = self._waiting.get(stream_id)
        if future is None or future.done():
            return
        self._stop(stream_id)
        future.set_exception(
            DeadlineExceeded(f"worker {self.worker_id} did not answer within {timeout:.3g} s")
        )

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._outbox and not self._cancels:
                    continue
                message = worker_pb2.ExecuteStreamRequest(
                    subtasks=self._outbox, cancel=self._cancels
                )
                self._outbox, self._cancels = [], []
                await self._call.write(message)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # the call ended under the write (grpc's error or state)
            self._break(
                Unavailable(
                    f"cannot send to worker {self.worker_id}: {error}", reason="WORKER_UNREACHABLE"
                )
            )

    async def _read(self) -> None:
        failure: AgentmeshError = Unavailable(
            f"worker {self.worker_id} ended its ExecuteStream", reason="WORKER_UNREACHABLE"
        )
        try:
            while True:
                response = await self._call.read()
                if not isinstance(response, worker_pb2.ExecuteStreamResponse):
                    break  # aio.EOF: the worker ended the stream
                for result in response.results:
                    future = self._waiting.pop(result.id, None)
                    if future is None or future.done():
                        continue  # cancelled or expired meanwhile
                    if result.HasField("error"):
                        # ExecuteStatus has google.rpc.Status's fields and numbers.
                        status = status_pb2.Status.FromString(result.error.SerializeToString())
                        error = _worker_error(error_from_status(status), self.worker_id)
                        future.set_exception(error)
                    else:
                        future.set_result(_result(result.response))
        except grpc.RpcError as error:
            cause = from_rpc_error(error)
            failure = Unavailable(
                f"the stream to worker {self.worker_id} broke: {cause.code_name}: {cause.message}",
                reason="WORKER_UNREACHABLE",
            )
        except asyncio.CancelledError:
            pass
        finally:
            self._break(failure)

    def _break(self, failure: AgentmeshError) -> None:
        """Fail every waiter (they retry elsewhere) and stop both tasks."""
        if self.broken:
            return
        self.broken = True
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(failure)
        if waiting:
            log.warning(
                "ExecuteStream ended with subtasks in flight",
                extra={"worker_id": self.worker_id, "subtasks": len(waiting)},
            )
        self._call.cancel()
        self._release()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def close(self) -> None:
        """End the stream: the worker sees its subtasks cancelled by a live scheduler."""
        self._break(Unavailable(f"worker {self.worker_id} left the mesh", reason="WORKER_GONE"))


def _request(call: SubtaskCall, attempt: int) -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id=call.key,
        subtask_id=call.subtask_id,
        capability=call.capability,
        input=dict_to_struct(call.input),
        difficulty=difficulty_to_proto(call.difficulty),
        attempt=attempt,
    )


def _result(response: worker_pb2.ExecuteResponse) -> ExecuteResult:
    return ExecuteResult(
        output=struct_to_dict(response.output),
        usage=usage_from_proto(response.usage),
        model=response.model,
        duration=response.duration.ToNanoseconds() / 1e9,
        replayed=response.replayed,
    )


def _wired(wire: Wire) -> worker_pb2.WiredField:
    """A follower's wired field as the worker takes it."""
    field = worker_pb2.WiredField(field=wire.field, collect=wire.collect)
    for source in wire.sources:
        if isinstance(source, Literal):
            field.sources.add().value.CopyFrom(_value(source.value))
        else:
            field.sources.add(ref=source)
    if wire.default is not NO_DEFAULT:
        field.default_value.CopyFrom(_value(wire.default))
    return field


def _value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def _worker_error(failure: AgentmeshError, worker_id: str) -> AgentmeshError:
    """A worker's error as the dispatcher sees it: UNKNOWN (unexplained) becomes INTERNAL."""
    if failure.code_name == "UNKNOWN":
        return AgentmeshError(
            f"worker {worker_id} failed: {failure.message}", reason="WORKER_FAILED"
        )
    return failure
