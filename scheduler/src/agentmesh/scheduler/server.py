"""The scheduler process: gRPC server, health, reflection, metrics, liveness sweeps."""

from __future__ import annotations

import asyncio
import logging

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import CollectorRegistry

from agentmesh.keda import externalscaler_pb2_grpc
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.scheduler.scaler import SERVICE_NAME as SCALER_SERVICE_NAME
from agentmesh.scheduler.scaler import BacklogCollector, ExternalScalerServicer
from agentmesh.scheduler.servicer import ROLES, SchedulerServicer
from agentmesh.scheduler.store import open_store
from agentmesh.scheduler.transport import GrpcTransport
from agentmesh.server import ports, reflection, tls
from agentmesh.server.callers import ADMINS, CallerGate
from agentmesh.server.clock import SystemClock
from agentmesh.server.handlers import RejectUndecodable
from agentmesh.server.metrics import MeshCollector, SchedulerMetrics, serve_metrics
from agentmesh.server.serving import Serving
from agentmesh.server.tls import connection_limits
from agentmesh.server.tokens import TokenVerifier
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc

log = logging.getLogger(__name__)

REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name
#: The setting a refused listen address names.
LISTEN = "AGENTMESH_LISTEN"
#: The methods only a worker's certificate may call (with TLS on); the handlers check
#: that it names the worker the call speaks for.
WORKER_METHODS = (f"/{SERVICE_NAME}/Register", f"/{SERVICE_NAME}/Heartbeat")


def peer_rules() -> dict[str, tls.Rule]:
    """Which certificates may call which method, with TLS on: Register and Heartbeat a
    worker's; the callers' RPCs and reflection a caller's (its token then decides its
    role), Dispatch a worker's too (for work a worker offloads); health any of the mesh."""
    rules: dict[str, tls.Rule] = dict.fromkeys(WORKER_METHODS, tls.workers_only)
    for method in ROLES:
        rules[f"/{SERVICE_NAME}/{method}"] = (
            tls.clients_or_workers if method == "Dispatch" else tls.clients_only
        )
    rules[f"/{REFLECTION}/ServerReflectionInfo"] = tls.clients_only
    return rules


def server_options(config: SchedulerConfig) -> list[tuple[str, int]]:
    return [
        # Large enough that an oversized input reaches the handler, which says why.
        ("grpc.max_receive_message_length", 2 * config.max_input_bytes + (1 << 16)),
        # gRPC core answers calls beyond its pending bound (1000 by default) with
        # CANCELLED; raise it so that admission control answers them instead, with
        # RESOURCE_EXHAUSTED and a retry delay.
        ("grpc.server.max_pending_requests", 20_000),
        ("grpc.server.max_pending_requests_hard_limit", 40_000),
        *connection_limits(config.max_streams_per_connection, config.max_metadata_bytes),
    ]


class SchedulerServer(Serving):
    """A running scheduler: `await start()`, then `await shutdown()` (idempotent).

    `run()` does both, draining on SIGTERM or SIGINT; `async with` works too.
    """

    def __init__(self, config: SchedulerConfig) -> None:
        # Plaintext beyond loopback stops the scheduler here, before it opens anything.
        tls.check_listen(config.listen, config.tls, LISTEN)
        self.config = config
        self.metrics = SchedulerMetrics(CollectorRegistry())
        self.transport = GrpcTransport(config.tls)
        # Raises StoreError for a store that cannot be opened, reached or is damaged.
        self.store = open_store(
            config.store, observer=self, replica=config.replica, lease=config.lease
        )
        self.core = SchedulerCore(
            config, self.transport, clock=SystemClock(), observer=self.metrics, store=self.store
        )
        self.metrics.registry.register(MeshCollector(self.core.snapshot))
        self.metrics.registry.register(BacklogCollector(self.core))
        self.metrics.heartbeat_interval.set(config.heartbeat_interval)
        self.metrics.store_up.set(0 if self.store is not None and not self.store.up else 1)
        self.health = health.aio.HealthServicer()
        denied = self.metrics.auth_denied
        # With TLS on, which certificates may call what (peer_rules).
        peers = tls.RequirePeer(
            config.tls.domain,
            peer_rules(),
            lambda reason: denied.labels(reason).inc(),
        )
        self.server = aio.server(
            interceptors=[RejectUndecodable(), peers], options=server_options(config)
        )
        # Raises ValueError, in one line, for auth settings that do not fit together.
        self.gate = CallerGate(
            TokenVerifier.from_settings(config.auth),
            lambda reason: denied.labels(reason).inc(),
        )
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
            SchedulerServicer(
                self.core,
                self.gate,
                config.tls,
                peers.denied,
                check_addresses=not config.allow_foreign_address,
            ),
            self.server,
        )
        # KEDA's external scaler, on the same port: worker pools scale on the backlog. Open
        # like health: KEDA sends no token, and it tells queue sizes alone.
        self.scaler = ExternalScalerServicer(self.core)
        externalscaler_pb2_grpc.add_ExternalScalerServicer_to_server(self.scaler, self.server)
        # Health stays open to all (probes carry no token); reflection is an admin's.
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(
            self.server,
            (
                SERVICE_NAME,
                SCALER_SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            ),
            guard=lambda metadata: self.gate.admit(metadata, "ServerReflectionInfo", ADMINS),
        )
        self.port = 0
        self.metrics_port = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._shutdown_started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        """The gRPC address served, host:port, with the port bound (known once started)."""
        return ports.bound(self.config.listen, self.port)

    async def start(self) -> None:
        self.port = tls.add_port(self.server, self.config.listen, self.config.tls, LISTEN)
        self._loop = asyncio.get_running_loop()
        # Unfinished requests are known before the first call is served, so a
        # repeat of one attaches to it; they resume after the recovery delay.
        self.core.recover(self.config.recovery_delay)
        if self.core.replicas is not None:
            self.core.replicas.start()
        await self.server.start()
        metrics = ""
        if self.config.metrics_listen:
            self.metrics_port = serve_metrics(self.config.metrics_listen, self.metrics.registry)
            metrics = ports.bound(self.config.metrics_listen, self.metrics_port)
        await self._set_health(self.store is None or self.store.up)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="liveness-sweeper")
        self.core.dispatcher.offload.load.start()
        # Last: whoever reads the ports file may call at once.
        if not self.gate.enabled:
            log.info(
                "caller tokens are not checked: no AGENTMESH_AUTH_PUBLIC_KEY or "
                "AGENTMESH_AUTH_JWKS (docs/security.md)"
            )
        ports.announce("scheduler", self.config.ports_file, self.address, metrics)

    async def _set_health(self, serving: bool) -> None:
        if self._shutdown_started:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    # -- StoreObserver (called on the store's writer thread) --------------------------

    def store_write_failed(self) -> None:
        self.metrics.store_write_errors.inc()

    def store_state(self, up: bool) -> None:
        """A store that cannot write makes the scheduler NOT_SERVING until it can."""
        self.metrics.store_up.set(1 if up else 0)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._set_health(up), loop)
        except RuntimeError:  # the loop is closing
            pass

    async def _sweep_forever(self) -> None:
        """Evict silent workers; check four times per heartbeat interval.

        A sweep that runs much later than scheduled measures a stall of the
        scheduler itself (SIGSTOP, a blocked event loop), during which
        heartbeats went unread; the core then evicts no one for it.
        """
        period = self.config.heartbeat_interval / 4
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            stalled = max(loop.time() - due, 0.0)
            for worker_id in await self.core.evict_silent(stalled):
                log.warning("worker evicted: heartbeats stopped", extra={"worker_id": worker_id})

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop serving: health NOT_SERVING first, then let calls finish for `grace` seconds
        (default 5)."""
        grace = 5.0 if grace is None else grace
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        self.core.stopping = True
        if self.core.replicas is not None:
            self.core.replicas.stop()
        self.scaler.close()
        await self.health.enter_graceful_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.core.dispatcher.offload.load.stop()
        await self.server.stop(grace)
        await self.transport.close()
        if self.store is not None:
            self.store.close()
        self._stopped.set()
