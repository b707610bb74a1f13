"""Heartbeat reports faster than the interval: coalesced, and a flood refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from agentmesh.scheduler.beats import MIN_GAP, BeatLimiter, Verdict
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.scheduler.servicer import SchedulerServicer
from agentmesh.v1 import scheduler_pb2, worker_pb2
from tests.support.fakes import FakeClock, FakeTransport

INFO = worker_pb2.WorkerInfo(
    worker_id="w0", address="127.0.0.1:7000", capabilities=["echo"], capacity=1
)


class AbortingContext:
    """What the servicer's error handling needs of a call: abort_with_status."""

    status: grpc.Status | None = None

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise aio.AbortError()


def test_a_beat_per_interval_is_always_applied() -> None:
    limiter = BeatLimiter(1.0, now=0.0)
    assert all(limiter.admit(float(t), False) is Verdict.APPLY for t in range(1000))


def test_beats_sooner_than_the_gap_are_coalesced_unless_draining_changes() -> None:
    limiter = BeatLimiter(1.0, now=0.0)
    assert limiter.admit(0.0, False) is Verdict.APPLY
    assert limiter.admit(MIN_GAP / 2, False) is Verdict.COALESCE
    assert limiter.admit(MIN_GAP / 2, True) is Verdict.APPLY  # draining: said at once
    assert limiter.admit(MIN_GAP / 2, True) is Verdict.COALESCE
    assert limiter.admit(MIN_GAP * 1.6, True) is Verdict.APPLY


def test_a_flood_is_refused_once_the_burst_is_spent_and_allowed_again_later() -> None:
    limiter = BeatLimiter(1.0, now=0.0)
    verdicts = [limiter.admit(0.0, False) for _ in range(BeatLimiter.burst + 1)]
    assert verdicts[-1] is Verdict.REFUSE
    assert verdicts[:-1].count(Verdict.REFUSE) == 0
    # The bucket refills at `burst` per interval.
    assert limiter.admit(1.0 / BeatLimiter.burst, False) is not Verdict.REFUSE


async def test_the_servicer_applies_one_beat_of_a_burst_and_ends_a_flood() -> None:
    clock = FakeClock()
    core = SchedulerCore(SchedulerConfig(store=""), FakeTransport(), clock=clock)
    servicer = SchedulerServicer(core)
    await servicer.Register(scheduler_pb2.RegisterRequest(worker=INFO), None)
    applied: list[int] = []
    heartbeat = core.heartbeat

    def counting(worker_id: str, report: object) -> None:
        applied.append(1)
        heartbeat(worker_id, report)  # type: ignore[arg-type]

    core.heartbeat = counting  # type: ignore[method-assign]

    async def flood() -> AsyncIterator[scheduler_pb2.HeartbeatRequest]:
        for _ in range(BeatLimiter.burst + 5):
            yield scheduler_pb2.HeartbeatRequest(worker_id="w0")
            await asyncio.sleep(0)

    answers = 0
    context = AbortingContext()
    with pytest.raises(aio.AbortError):
        async for _ in servicer.Heartbeat(flood(), context):  # type: ignore[arg-type]
            answers += 1
    assert answers == BeatLimiter.burst and len(applied) == 1
    assert context.status is not None and context.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "HEARTBEAT_FLOOD" in str(context.status.trailing_metadata)
    assert core.registry.get("w0") is None  # the stream ended: the worker is evicted
