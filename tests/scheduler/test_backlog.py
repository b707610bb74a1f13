"""A worker pool's backlog metric, the autoscaler's input: pools, queues, waits, in-flight.

The clock is simulated and the transport holds attempts until the test lets
them go, so the queue is exactly what the test built.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agentmesh.errors import InvalidArgument
from agentmesh.scheduler import backlog
from agentmesh.scheduler.backlog import Pool
from agentmesh.scheduler.calls import ExecuteResult, SubtaskCall
from agentmesh.scheduler.dispatcher import Dispatcher
from agentmesh.scheduler.registry import WorkerSpec
from agentmesh.scheduler.scaler import BacklogCollector
from agentmesh.tiers import Tier
from tests.support.fakes import FakeTransport, SimClock, make_dispatcher, settle


class Held(FakeTransport):
    """Every attempt waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def execute(self, worker, call, attempt, timeout) -> ExecuteResult:
        await self.gate.wait()
        return ExecuteResult({"by": worker.worker_id})


def join(
    dispatcher: Dispatcher, worker_id: str, capability: str = "echo", tier: Tier = Tier.SMALL
) -> None:
    spec = WorkerSpec(worker_id, "127.0.0.1:1", frozenset({capability}), 1, tier=tier)
    dispatcher.workers_changed(dispatcher.registry.register(spec, dispatcher.clock.now()))


def submit(dispatcher: Dispatcher, count: int, capability: str = "echo") -> list[asyncio.Task]:
    return [
        asyncio.create_task(
            dispatcher.run(SubtaskCall("r", f"s{i}", capability, {}, deadline=2000.0))
        )
        for i in range(count)
    ]


def measure(dispatcher: Dispatcher, **metadata: str) -> backlog.Backlog:
    pool = Pool.from_metadata(metadata)
    return backlog.measure(pool, dispatcher.registry, dispatcher.slots, dispatcher.latencies)


def make(worker_wait: float = 0.0) -> tuple[Dispatcher, SimClock, Held]:
    transport = Held()
    clock = SimClock(1000.0)
    dispatcher = make_dispatcher(transport, clock=clock, workers=0, worker_wait=worker_wait)
    return dispatcher, clock, transport


# -- the pool a ScaledObject names -----------------------------------------------------


def test_metadata_names_a_pool_by_capabilities_and_tier() -> None:
    pool = Pool.from_metadata(
        {
            "capabilities": "summarize, sentiment",
            "tier": "Large",
            "targetSeconds": "4",
            "scalerAddress": "agentmesh-scheduler:50051",
        }
    )
    assert pool.capabilities == {"summarize", "sentiment"}
    assert pool.tier is Tier.LARGE
    assert pool.target == 4.0
    assert pool.name == "agentmesh-backlog-large-sentiment-summarize"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({}, "capabilities"),
        ({"tier": "huge"}, "tier"),
        ({"tier": "small", "targetSeconds": "0"}, "targetSeconds"),
        ({"tier": "small", "targetSeconds": "soon"}, "targetSeconds"),
        ({"tier": "small", "activationSeconds": "-1"}, "activationSeconds"),
        ({"tier": "small", "workerCapacity": "2.5"}, "workerCapacity"),
    ],
)
def test_metadata_that_names_no_pool_is_refused_naming_the_key(
    metadata: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Pool.from_metadata(metadata)
    fields = [v.field for v in refused.value.violations]
    assert fields == [f"scaledObjectRef.scalerMetadata.{field}"]


# -- the metric ------------------------------------------------------------------------


async def test_an_idle_pool_is_inactive_at_zero() -> None:
    dispatcher, _, _ = make()
    join(dispatcher, "w0")
    idle = measure(dispatcher, capabilities="echo")
    assert (idle.metric, idle.active, idle.replicas) == (0.0, False, 0)


async def test_queued_work_counts_at_its_latency_per_worker_slot_before_anything_waited() -> None:
    dispatcher, clock, transport = make()
    join(dispatcher, "w0")
    dispatcher.latencies.observe("echo", 2.0)
    tasks = submit(dispatcher, 5)
    await settle()
    now = measure(dispatcher, capabilities="echo", targetSeconds="10")
    # 1 running, 4 queued: 4 × 2 s ÷ 1 slot + no wait yet + 10 × 1 running ÷ 1 slot.
    assert (now.queued, now.in_flight, now.oldest_wait) == (4, 1, 0.0)
    assert now.metric == pytest.approx(18.0)
    assert now.active and now.replicas == 2
    # The oldest entry's age adds to it as it waits.
    await clock.advance(3.0)
    assert measure(dispatcher, capabilities="echo").metric == pytest.approx(21.0)
    transport.gate.set()
    await asyncio.gather(*tasks)
    drained = measure(dispatcher, capabilities="echo")
    assert (drained.metric, drained.active, drained.replicas) == (0.0, False, 0)


async def test_a_steady_load_with_no_queue_keeps_its_busy_workers() -> None:
    dispatcher, _, transport = make()
    for i in range(3):
        join(dispatcher, f"w{i}")
    tasks = submit(dispatcher, 3)
    await settle()
    busy = measure(dispatcher, capabilities="echo", targetSeconds="5")
    assert (busy.queued, busy.in_flight) == (0, 3)
    assert busy.replicas == 3
    transport.gate.set()
    await asyncio.gather(*tasks)


async def test_a_pool_of_one_tier_counts_only_its_tier() -> None:
    dispatcher, _, transport = make()
    join(dispatcher, "small", tier=Tier.SMALL)
    join(dispatcher, "large", tier=Tier.LARGE)
    tasks = submit(dispatcher, 4)  # all go to the cheapest tier
    await settle()
    small = measure(dispatcher, tier="small")
    large = measure(dispatcher, tier="large", capabilities="echo")
    assert (small.queued, small.in_flight) == (3, 1)
    assert (large.queued, large.in_flight, large.active) == (0, 0, False)
    transport.gate.set()
    await asyncio.gather(*tasks)


async def test_a_pool_at_zero_sees_the_subtasks_waiting_for_a_worker_to_register() -> None:
    dispatcher, clock, transport = make(worker_wait=60.0)
    tasks = submit(dispatcher, 2, capability="summarize")
    await settle()
    await clock.advance(1.5)
    cold = measure(dispatcher, capabilities="summarize", workerCapacity="2")
    assert (cold.queued, cold.workers, cold.worker_capacity) == (2, 0, 2)
    # Never observed: the capability counts at the registry's initial latency (0.05 s).
    assert cold.metric == pytest.approx(2 * 0.05 / 2 + 1.5)
    assert cold.active and cold.replicas == 1
    join(dispatcher, "w0", capability="summarize")
    transport.gate.set()
    await asyncio.gather(*tasks)
    assert not measure(dispatcher, capabilities="summarize").active


async def test_prometheus_gets_each_tier_s_backlog_in_two_parts_that_make_keda_s_metric() -> None:
    dispatcher, clock, transport = make()
    join(dispatcher, "w0")  # tier small
    dispatcher.latencies.observe("echo", 2.0)
    tasks = submit(dispatcher, 5)
    await settle()
    await clock.advance(1.0)
    core = SimpleNamespace(registry=dispatcher.registry, dispatcher=dispatcher)
    families = {f.name: f for f in BacklogCollector(core).collect()}  # type: ignore[arg-type]
    waiting = {
        s.labels["tier"]: s.value for s in families["agentmesh_pool_waiting_seconds"].samples
    }
    busy = {s.labels["tier"]: s.value for s in families["agentmesh_pool_busy_workers"].samples}
    assert waiting == {"builtin": 0.0, "small": pytest.approx(4 * 2.0 + 1.0), "large": 0.0}
    assert busy == {"builtin": 0.0, "small": 1.0, "large": 0.0}
    keda = measure(dispatcher, tier="small", targetSeconds="10").metric
    assert waiting["small"] + 10 * busy["small"] == pytest.approx(keda)
    transport.gate.set()
    await asyncio.gather(*tasks)
