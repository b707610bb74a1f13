"""A worker never beats faster than a tenth of the heartbeat interval, however often it is
asked to beat now: the scheduler coalesces what comes faster, and refuses a flood."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from agentmesh.agents.membership import MIN_GAP, Membership
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from agentmesh.wire import duration

INTERVAL = 0.5
#: How long the worker is asked to beat every millisecond.
WINDOW = 0.5


class Scheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    """Registers anyone, and records when each beat arrives."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    async def Register(self, request: Any, context: Any) -> scheduler_pb2.RegisterResponse:
        return scheduler_pb2.RegisterResponse(
            worker_id=request.worker.worker_id, heartbeat_interval=duration(INTERVAL)
        )

    async def Heartbeat(
        self, request_iterator: AsyncIterator[scheduler_pb2.HeartbeatRequest], context: Any
    ) -> AsyncIterator[scheduler_pb2.HeartbeatResponse]:
        loop = asyncio.get_running_loop()
        async for _ in request_iterator:
            self.arrivals.append(loop.time())
            yield scheduler_pb2.HeartbeatResponse(heartbeat_interval=duration(INTERVAL))


async def test_beats_asked_for_at_once_keep_a_tenth_of_the_interval_apart() -> None:
    scheduler = Scheduler()
    server = aio.server()
    scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(scheduler, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    info = worker_pb2.WorkerInfo(worker_id="w", address="127.0.0.1:1", capabilities=["echo"])
    membership = Membership(f"127.0.0.1:{port}", lambda: info, worker_pb2.WorkerHealth)
    membership.start()
    try:
        await asyncio.wait_for(membership.registered.wait(), 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < WINDOW:
            membership.beat_now()  # as a storm of cancelled calls would
            await asyncio.sleep(0.001)
        heard = [t for t in scheduler.arrivals if start < t <= start + WINDOW]
    finally:
        await membership.stop()
        await membership.close()
        await server.stop(None)
    # Counted over a window rather than gap by gap: the scheduler reads two beats sent
    # apart together whenever its loop was busy, but cannot hear more than were sent.
    paced = WINDOW / (MIN_GAP * INTERVAL)
    assert paced / 2 <= len(heard) <= paced + 2, len(heard)
