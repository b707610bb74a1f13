"""Heartbeat streams and registrations: only the stream that speaks for a worker evicts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.scheduler.servicer import SchedulerServicer
from agentmesh.v1 import scheduler_pb2, worker_pb2
from tests.support.fakes import FakeClock, FakeTransport

INFO = worker_pb2.WorkerInfo(
    worker_id="w0", address="127.0.0.1:7000", capabilities=["echo"], capacity=1
)


async def beats(until: asyncio.Event) -> AsyncIterator[scheduler_pb2.HeartbeatRequest]:
    yield scheduler_pb2.HeartbeatRequest(worker_id="w0")
    await until.wait()


async def test_a_stream_given_up_before_a_new_registration_does_not_evict_the_worker() -> None:
    core = SchedulerCore(SchedulerConfig(store=""), FakeTransport(), clock=FakeClock())
    servicer = SchedulerServicer(core)
    await servicer.Register(scheduler_pb2.RegisterRequest(worker=INFO), None)
    closed = asyncio.Event()
    old = servicer.Heartbeat(beats(closed), None)
    assert (await anext(old)).directive == scheduler_pb2.HEARTBEAT_DIRECTIVE_UNSPECIFIED
    # The worker lost that stream on its side and registered again; then the old
    # stream's end reaches the scheduler, before the new stream's first beat.
    await servicer.Register(scheduler_pb2.RegisterRequest(worker=INFO), None)
    closed.set()
    async for _ in old:
        pass
    assert core.registry.get("w0") is not None


async def test_the_end_of_the_stream_that_speaks_for_a_worker_evicts_it() -> None:
    core = SchedulerCore(SchedulerConfig(store=""), FakeTransport(), clock=FakeClock())
    servicer = SchedulerServicer(core)
    await servicer.Register(scheduler_pb2.RegisterRequest(worker=INFO), None)
    closed = asyncio.Event()
    stream = servicer.Heartbeat(beats(closed), None)
    await anext(stream)
    closed.set()
    async for _ in stream:
        pass
    assert core.registry.get("w0") is None
