"""Typed Python clients for SchedulerService, synchronous and asyncio.

Every call takes a timeout (the gRPC deadline, which the scheduler passes
on to its subtasks) and raises `agentmesh.errors` exceptions, typed
details included, instead of raw `grpc.RpcError`s.

    with Client("127.0.0.1:50051") as client:
        request = client.submit("support_ticket", {"text": "My order ..."})
        print(request.answer["reply"])

Submit and StreamSubmit answer with the request's BASIC view (no plan, no
subtasks) unless asked for `view=FULL`; GetRequest with the FULL view unless
asked for `view=BASIC`.

A scheduler that checks callers' tokens needs one: `Client(target, token=...)`,
or the `AGENTMESH_TOKEN` environment variable, sent with every call as
`authorization: Bearer <token>` metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import grpc
from grpc import aio

from agentmesh import tls as _tls
from agentmesh.certfiles import RenewingBlockingChannel, RenewingChannel
from agentmesh.messages import (
    BASIC,
    FULL,
    UNSPECIFIED,
    Goal,
    Source,
    View,
    credentials,
    dispatch_request,
    source_fields,
    submit_fields,
)
from agentmesh.status import from_rpc_error
from agentmesh.v1 import plan_pb2, scheduler_pb2, scheduler_pb2_grpc
from agentmesh.wire import dict_to_struct

__all__ = [
    "BASIC",
    "DEFAULT_TIMEOUT",
    "FULL",
    "UNSPECIFIED",
    "AsyncClient",
    "Client",
    "Goal",
    "Source",
]

#: Deadline of a call that names none, in seconds.
DEFAULT_TIMEOUT = 60.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")


_BlockingStub: TypeAlias = scheduler_pb2_grpc.SchedulerServiceStub
# The asyncio stub is a type of the stubs (.pyi) alone.
_AioStub: TypeAlias = "scheduler_pb2_grpc.SchedulerServiceAsyncStub"


def _blocking_stub(channel: grpc.Channel) -> _BlockingStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


def _aio_stub(channel: aio.Channel) -> _AioStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


class Client:
    """A blocking client; `with Client(target) as c:` closes the channel.

    `token` is the bearer token sent with every call (default: `AGENTMESH_TOKEN`, if set).
    With `tls` on (`agentmesh.tls.TlsConfig`, e.g. `TlsConfig.from_env()`), the channel is
    mutual TLS: it presents the caller's certificate and verifies the scheduler's. When
    the certificate's files are renewed, the next call (at most a second later) goes over
    a new channel with the new certificate; calls already running finish on the old one.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls: _tls.TlsConfig | None = None,
    ) -> None:
        self.timeout = timeout
        self._metadata = credentials(token)
        self._channels = RenewingBlockingChannel(target, tls, _blocking_stub)

    def submit(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        cost_budget_usd: float = 0.0,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
    ) -> scheduler_pb2.Request:
        """Run a workflow (by name), a plan or a Goal on an input; the finished request.

        The request comes in the BASIC view (no plan, no subtasks) unless `view` is FULL.
        """
        request = scheduler_pb2.SubmitRequest(
            **submit_fields(source, data, request_id, priority, cost_budget_usd, view)
        )
        return self._call(lambda stub: stub.Submit, request, timeout).request

    def stream_submit(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        cost_budget_usd: float = 0.0,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
    ) -> Iterator[scheduler_pb2.StreamSubmitResponse]:
        """Progress events, then the finished request as the last message (BASIC unless
        `view` is FULL: the events carry the plan and every subtask's progress)."""
        request = scheduler_pb2.StreamSubmitRequest(
            **submit_fields(source, data, request_id, priority, cost_budget_usd, view)
        )
        stub, release = self._channels.acquire()
        call = stub.StreamSubmit(request, timeout=timeout or self.timeout, metadata=self._metadata)
        try:
            yield from call
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            # Leaving the loop early (or closing the generator) cancels the
            # request and its running subtasks.
            call.cancel()
            release()

    def get_request(
        self,
        request_id: str,
        *,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
        tenant: str | None = None,
    ) -> scheduler_pb2.Request:
        """A request's state and, once finished, its result: FULL unless `view` is BASIC.

        The request of that id in the caller's own tenant, or (for an admin) in `tenant`.
        """
        request = scheduler_pb2.GetRequestRequest(
            request_id=request_id, view=View(view), tenant=tenant
        )
        return self._call(lambda stub: stub.GetRequest, request, timeout).request

    def decompose(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> plan_pb2.Plan:
        """The plan a workflow (or a planner, for a Goal) makes for an input, or a plan checked."""
        request = scheduler_pb2.DecomposeRequest(
            input=dict_to_struct(dict(data)), **source_fields(source)
        )
        return self._call(lambda stub: stub.Decompose, request, timeout).plan

    def dispatch(
        self,
        capability: str,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        difficulty: int = 0,
        timeout: float | None = None,
    ) -> scheduler_pb2.DispatchResponse:
        """One subtask, routed to the best worker offering the capability, with retries."""
        request = dispatch_request(capability, data, request_id, priority, difficulty)
        return self._call(lambda stub: stub.Dispatch, request, timeout)

    def list_workers(
        self, capability: str = "", *, timeout: float | None = None
    ) -> list[scheduler_pb2.WorkerStatus]:
        request = scheduler_pb2.ListWorkersRequest(capability=capability)
        return list(self._call(lambda stub: stub.ListWorkers, request, timeout).workers)

    def get_stats(
        self, recent_requests: int = 0, *, timeout: float | None = None
    ) -> scheduler_pb2.GetStatsResponse:
        """Queues, request outcomes, rate, latency percentiles and the recent requests."""
        request = scheduler_pb2.GetStatsRequest(recent_requests=recent_requests)
        return self._call(lambda stub: stub.GetStats, request, timeout)

    def _call(
        self,
        method: Callable[[_BlockingStub], grpc.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        timeout: float | None,
    ) -> Resp:
        """A unary call (`method` of the current stub) with the client's default deadline;
        errors as agentmesh errors."""
        with self._channels.hold() as stub:
            try:
                return method(stub)(
                    request, timeout=timeout or self.timeout, metadata=self._metadata
                )
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None

    def close(self) -> None:
        self._channels.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio client; `async with AsyncClient(target) as c:` closes the channel.

    `token` and `tls` as for `Client`.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        tls: _tls.TlsConfig | None = None,
    ) -> None:
        self.timeout = timeout
        self._metadata = credentials(token)
        self._channels = RenewingChannel(target, tls, _aio_stub)

    async def submit(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        cost_budget_usd: float = 0.0,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
    ) -> scheduler_pb2.Request:
        request = scheduler_pb2.SubmitRequest(
            **submit_fields(source, data, request_id, priority, cost_budget_usd, view)
        )
        return (await self._call(lambda stub: stub.Submit, request, timeout)).request

    async def stream_submit(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        cost_budget_usd: float = 0.0,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
    ) -> AsyncIterator[scheduler_pb2.StreamSubmitResponse]:
        request = scheduler_pb2.StreamSubmitRequest(
            **submit_fields(source, data, request_id, priority, cost_budget_usd, view)
        )
        stub, release = self._channels.acquire()
        call = stub.StreamSubmit(request, timeout=timeout or self.timeout, metadata=self._metadata)
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()
            release()

    async def get_request(
        self,
        request_id: str,
        *,
        view: int = UNSPECIFIED,
        timeout: float | None = None,
        tenant: str | None = None,
    ) -> scheduler_pb2.Request:
        """As `Client.get_request`."""
        request = scheduler_pb2.GetRequestRequest(
            request_id=request_id, view=View(view), tenant=tenant
        )
        return (await self._call(lambda stub: stub.GetRequest, request, timeout)).request

    async def decompose(
        self,
        source: Source,
        data: Mapping[str, Any],
        *,
        timeout: float | None = None,
    ) -> plan_pb2.Plan:
        """As `Client.decompose`."""
        request = scheduler_pb2.DecomposeRequest(
            input=dict_to_struct(dict(data)), **source_fields(source)
        )
        return (await self._call(lambda stub: stub.Decompose, request, timeout)).plan

    async def dispatch(
        self,
        capability: str,
        data: Mapping[str, Any],
        *,
        request_id: str = "",
        priority: int = 0,
        difficulty: int = 0,
        timeout: float | None = None,
    ) -> scheduler_pb2.DispatchResponse:
        """As `Client.dispatch`."""
        request = dispatch_request(capability, data, request_id, priority, difficulty)
        return await self._call(lambda stub: stub.Dispatch, request, timeout)

    async def list_workers(
        self, capability: str = "", *, timeout: float | None = None
    ) -> list[scheduler_pb2.WorkerStatus]:
        request = scheduler_pb2.ListWorkersRequest(capability=capability)
        return list((await self._call(lambda stub: stub.ListWorkers, request, timeout)).workers)

    async def get_stats(
        self, recent_requests: int = 0, *, timeout: float | None = None
    ) -> scheduler_pb2.GetStatsResponse:
        request = scheduler_pb2.GetStatsRequest(recent_requests=recent_requests)
        return await self._call(lambda stub: stub.GetStats, request, timeout)

    async def _call(
        self,
        method: Callable[[_AioStub], aio.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        timeout: float | None,
    ) -> Resp:
        """As `Client._call`."""
        with self._channels.hold() as stub:
            try:
                return await method(stub)(
                    request, timeout=timeout or self.timeout, metadata=self._metadata
                )
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None

    async def close(self) -> None:
        await self._channels.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
