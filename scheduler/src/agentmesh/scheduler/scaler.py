"""KEDA's external scaler (externalscaler.ExternalScaler), served beside SchedulerService,
and the same backlog per tier for Prometheus (an HPA through the Prometheus adapter).

Each call names a worker pool in its ScaledObject's metadata (`backlog.Pool`);
the answers come from the pool's backlog (`backlog.measure`): active while it
has work, and its metric in expected seconds, which KEDA divides by the
target to get a replica count. The contract's documentation, from our side,
is the "Autoscaling" comment of agentmesh/v1/scheduler.proto.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

from grpc import aio
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agentmesh.keda import externalscaler_pb2 as pb
from agentmesh.keda import externalscaler_pb2_grpc as pb_grpc
from agentmesh.scheduler import backlog
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.server.handlers import streaming, unary
from agentmesh.tiers import Tier

Context = aio.ServicerContext[Any, Any]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name

#: Seconds between two looks at a pool's activity for StreamIsActive.
PUSH_INTERVAL = 1.0


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """IsActive, StreamIsActive, GetMetricSpec, GetMetrics and StreamMetricSpec per pool."""

    def __init__(self, core: SchedulerCore, push_interval: float = PUSH_INTERVAL) -> None:
        self.core = core
        self.push_interval = push_interval
        # Set by `close`: the streams end, so that they do not hold the server's shutdown.
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End the open streams (the scheduler is shutting down)."""
        self._closing.set()

    async def _closed_within(self, seconds: float) -> bool:
        """Wait up to `seconds`; whether the servicer closed meanwhile."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def backlog(self, ref: pb.ScaledObjectRef) -> backlog.Backlog:
        """The backlog of the pool the ScaledObject names (InvalidArgument when it names none)."""
        pool = backlog.Pool.from_metadata(ref.scalerMetadata)
        dispatcher = self.core.dispatcher
        return backlog.measure(
            pool, self.core.registry, dispatcher.slots, dispatcher.latencies, _others(self.core)
        )

    @unary
    async def IsActive(self, request: pb.ScaledObjectRef, context: Context) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=self.backlog(request).active)

    @streaming
    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.IsActiveResponse]:
        # The first answer at once, then each change: KEDA scales a pool from zero as soon
        # as it hears `true`, rather than at its next polling interval.
        last: bool | None = None
        while True:
            active = self.backlog(request).active
            if active != last:
                last = active
                yield pb.IsActiveResponse(result=active)
            if await self._closed_within(self.push_interval):
                return

    @unary
    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> pb.GetMetricSpecResponse:
        return _spec(backlog.Pool.from_metadata(request.scalerMetadata))

    @streaming
    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: Context
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        # The target is the metadata's: it never changes while the stream lives, so the
        # spec is sent once (as the contract asks, at once) and the stream stays open.
        yield _spec(backlog.Pool.from_metadata(request.scalerMetadata))
        await self._closing.wait()

    @unary
    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: Context
    ) -> pb.GetMetricsResponse:
        measured = self.backlog(request.scaledObjectRef)
        metric = measured.metric
        return pb.GetMetricsResponse(
            metricValues=[
                pb.MetricValue(
                    # KEDA asks by the name it gave the metric (prefixed "s<N>-"): echo it.
                    metricName=request.metricName or measured.pool.name,
                    metricValue=math.ceil(metric),
                    metricValueFloat=metric,
                )
            ]
        )


def _spec(pool: backlog.Pool) -> pb.GetMetricSpecResponse:
    return pb.GetMetricSpecResponse(
        metricSpecs=[
            pb.MetricSpec(
                metricName=pool.name,
                targetSize=max(math.ceil(pool.target), 1),
                targetSizeFloat=pool.target,
            )
        ]
    )


class BacklogCollector(Collector):
    """Each tier's backlog as two gauges, read at scrape time, for clusters without KEDA.

    A pool of one tier scales on `waiting + target × busy` (the metric KEDA gets), which
    an HPA computes from these through the Prometheus adapter (docs/kubernetes.md).
    """

    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    def collect(self) -> Iterator[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "agentmesh_pool_waiting_seconds",
            "The work waiting for a tier's workers, in one worker's expected seconds "
            "(queued subtasks × their capability's latency ÷ a worker's slots), plus the "
            "oldest wait: the pool's backlog metric less its busy workers' share.",
            labels=["tier"],
        )
        busy = GaugeMetricFamily(
            "agentmesh_pool_busy_workers",
            "A tier's subtasks running now, in workers' worth (in flight ÷ a worker's slots).",
            labels=["tier"],
        )
        queued = GaugeMetricFamily(
            "agentmesh_pool_queued_subtasks",
            "Subtasks waiting for a tier's workers (in its queues, or for a worker to "
            "register): the whole mesh's when several schedulers share a store.",
            labels=["tier"],
        )
        for tier in (Tier.BUILTIN, Tier.SMALL, Tier.LARGE):
            measured = self._measure(backlog.Pool(frozenset(), tier))
            waiting.add_metric([tier.label], measured.waiting_seconds)
            busy.add_metric([tier.label], measured.busy_workers)
            queued.add_metric([tier.label], measured.queued)
        yield waiting
        yield busy
        yield queued

    def _measure(self, pool: backlog.Pool) -> backlog.Backlog:
        # A scrape runs on the metrics server's thread while the event loop changes the
        # queues: a dict that changes size under the reading is read again.
        dispatcher = self.core.dispatcher
        others = _others(self.core)
        for _ in range(3):
            try:
                return backlog.measure(
                    pool, self.core.registry, dispatcher.slots, dispatcher.latencies, others
                )
            except RuntimeError:
                continue
        return backlog.measure(
            pool, self.core.registry, dispatcher.slots, dispatcher.latencies, others
        )


def _others(core: SchedulerCore) -> list[backlog.ReplicaBacklog]:
    """The other replicas' backlogs (several schedulers over one store), else none."""
    replicas = getattr(core, "replicas", None)  # a test's stand-in core may have none
    return replicas.others if replicas is not None else []
