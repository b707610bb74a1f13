"""The liveness sweep: silent workers go, but not for the scheduler's own stall."""

from __future__ import annotations

from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.scheduler.registry import HealthReport, WorkerSpec
from tests.support.fakes import FakeClock, FakeTransport


def core_with_workers(n: int = 3) -> tuple[SchedulerCore, FakeClock]:
    clock = FakeClock()
    core = SchedulerCore(
        SchedulerConfig(heartbeat_interval=1.0, liveness_factor=2.5, store=""),
        FakeTransport(),
        clock=clock,
    )
    for i in range(n):
        core.register(WorkerSpec(f"w{i}", f"127.0.0.1:{7000 + i}", frozenset({"echo"})))
    return core, clock


async def test_a_silent_worker_is_evicted() -> None:
    core, clock = core_with_workers()
    clock.advance(1.0)
    core.heartbeat("w0", HealthReport())
    core.heartbeat("w1", HealthReport())
    clock.advance(2.0)
    assert await core.evict_silent(stalled=0.0) == ["w2"]  # 3 s silent, the timeout is 2.5 s


async def test_a_stall_of_the_scheduler_evicts_no_one() -> None:
    core, clock = core_with_workers()
    clock.advance(3.0)  # the scheduler was stopped for 3 s: heartbeats wait unread
    assert await core.evict_silent(stalled=3.0) == []
    assert len(core.registry) == 3
    # Every worker has a fresh window from the end of the stall ...
    clock.advance(2.0)
    core.heartbeat("w0", HealthReport())
    core.heartbeat("w1", HealthReport())
    assert await core.evict_silent() == []
    # ... and one that really stopped is evicted a liveness timeout after it.
    clock.advance(0.6)
    assert await core.evict_silent() == ["w2"]


async def test_a_short_lag_of_the_sweep_changes_nothing() -> None:
    core, clock = core_with_workers(1)
    clock.advance(3.0)
    assert await core.evict_silent(stalled=0.1) == ["w0"]


async def test_the_metrics_snapshot_shows_the_latency_balancing_uses() -> None:
    core, clock = core_with_workers(2)
    w0 = core.registry.get("w0")
    assert w0 is not None
    w0.observe_latency(16.0, clock.now())  # slow once
    clock.advance(60.0)  # then nothing for a minute: the estimate has decayed since
    now = clock.now()
    shown = {w.worker_id: w.latency for w in core.snapshot().workers}
    assert shown["w0"] == w0.latency_estimate(now) < 16.0
