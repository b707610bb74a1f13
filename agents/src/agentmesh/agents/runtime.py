"""A worker process assembled: the core, its servicer, membership, health, metrics.

`WorkerCore` (`core.py`) runs subtasks; `WorkerServicer` (`servicer.py`)
serves it as WorkerService; `Membership` (`membership.py`) registers and
streams health, and its `SchedulerLink` tells the core whether the
scheduler is alive when a call is cancelled. `Worker` wires them to one
gRPC server, as `scheduler/server.py` does for the scheduler.

On SIGTERM (or `shutdown()`) the worker drains: health goes NOT_SERVING,
the scheduler is told it is draining and sends no more work, in-flight
subtasks finish, the Heartbeat stream closes, and the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from agentmesh.agents.backend import Backend
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.convert import health_to_proto, info_to_proto
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.membership import Membership
from agentmesh.agents.memberships import Memberships, scheduler_addresses
from agentmesh.agents.pyskills import PythonSkills, WithOwnSkills
from agentmesh.agents.results import make_result_store
from agentmesh.agents.servicer import EXECUTE, EXECUTE_STREAM, SERVICE_NAME, WorkerServicer
from agentmesh.agents.skilldef import SkillDefinition
from agentmesh.agents.skillfiles import check_model_backend, load_skills_dirs
from agentmesh.agents.skillload import load_skills_modules
from agentmesh.server import ports, reflection, tls
from agentmesh.server.clock import Clock, SystemClock
from agentmesh.server.handlers import RejectUndecodable
from agentmesh.server.metrics import WorkerMetrics, serve_metrics
from agentmesh.server.serving import Serving
from agentmesh.server.skills import SKILLS, Skill
from agentmesh.tiers import Tier
from agentmesh.v1 import worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

__all__ = ["Worker", "offered_skills", "worker_tier"]

#: The setting a refused listen address names.
LISTEN = "AGENTMESH_WORKER_LISTEN"
#: Largest metadata of a call to a worker (trace context and little else).
METADATA_BYTES = 16_384


class Worker(Serving):
    """One worker agent process: `await start()`, `await shutdown()`, or `run()`."""

    def __init__(self, config: WorkerConfig, backend: Backend, clock: Clock | None = None) -> None:
        # Plaintext beyond loopback stops the worker here (a ValueError, one line).
        tls.check_listen(config.listen, config.tls, LISTEN)
        self.config = config
        # Skills written in Python (`--skills-module`): a bad module stops the worker here.
        python = load_skills_modules(config.skills_modules, reserved=SKILLS)
        # Skills declared for a model (`--skills-dir`): a bad file stops the worker here too.
        declared = load_skills_dirs(config.skills_dirs, reserved={*SKILLS, *python})
        if declared:
            check_model_backend(declared.values(), backend)
        self.own_skills: Mapping[str, SkillDefinition] = {**python, **declared}
        if self.own_skills:
            backend = WithOwnSkills(PythonSkills(self.own_skills, backend), backend)
        self.backend = backend
        if config.tls.enabled:
            # The scheduler accepts this worker only under the id its certificate names.
            self.worker_id = tls.own_worker_id(config.tls, config.worker_id)
        else:
            self.worker_id = config.worker_id or f"{backend.name}-{uuid.uuid4().hex[:8]}"
        self.tier = worker_tier(config.tier, backend, [d.tier for d in self.own_skills.values()])
        self.metrics = WorkerMetrics(CollectorRegistry())
        self.metrics.info.labels(self.worker_id, backend.name, backend.model, self.tier.label).set(
            1
        )
        # One membership per scheduler named (several: the replicas of one store).
        self.membership = Memberships(
            [
                Membership(address, self.info, self.health_report, lambda: self.skills, config.tls)
                for address in scheduler_addresses(config.scheduler)
            ]
        )
        # A model server that runs fewer calls at once caps the capacity: the rest wait in
        # the mesh, where priorities and deadlines apply, not inside the server.
        limit = getattr(backend, "concurrency", None) or config.capacity
        self.core = WorkerCore(
            backend,
            worker_id=self.worker_id,
            skills=offered_skills(config.skills, self.own_skills),
            catalogue={**SKILLS, **{n: d.skill for n, d in self.own_skills.items()}},
            capacity=min(config.capacity, limit),
            results=make_result_store(config.store, config.results_kept),
            clock=clock or SystemClock(),
            alive=self._scheduler_alive,
            metrics=self.metrics,
        )
        self.health = health.aio.HealthServicer()
        denied = self.metrics.auth_denied
        # Only the scheduler's certificate may hand this worker work (with TLS on).
        peers = tls.RequirePeer(
            config.tls.domain,
            {f"/{EXECUTE}": tls.scheduler_only, f"/{EXECUTE_STREAM}": tls.scheduler_only},
            lambda reason: denied.labels(reason).inc(),
        )
        # Only the scheduler calls a worker, a few calls beyond its capacity at most.
        streams = max(100, 4 * config.capacity)
        self.server = aio.server(
            interceptors=[RejectUndecodable(), peers],
            options=tls.connection_limits(streams, METADATA_BYTES),
        )
        self.servicer = WorkerServicer(self.core)
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable(
            self.server,
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
        )
        self.address = ""
        self._stopped = asyncio.Event()
        self._shutdown_started = False

    @property
    def skills(self) -> Mapping[str, Skill]:
        """The skills the worker offers, by name, with their contracts (built-in and its own):
        what it registers. The core holds them (`WorkerCore.skills`)."""
        return self.core.skills

    @property
    def capacity(self) -> int:
        return self.core.capacity

    @property
    def draining(self) -> bool:
        return self.core.draining

    async def _scheduler_alive(self) -> bool:
        """Whether the scheduler answers a beat sent now, within 2.5 heartbeat intervals."""
        interval = self.membership.heartbeat_interval
        return await self.membership.link.alive(timeout=max(2.5 * interval, 1.0))

    # -- membership ------------------------------------------------------------------

    def info(self) -> worker_pb2.WorkerInfo:
        """What the worker declares when it registers."""
        return info_to_proto(
            worker_id=self.worker_id,
            address=self.address,
            capabilities=sorted(self.skills),
            backend=self.backend.name,
            model=self.backend.model,
            tier=self.tier,
            capacity=self.capacity,
            input_price_per_mtok=self.backend.input_price_per_mtok,
            output_price_per_mtok=self.backend.output_price_per_mtok,
            execute_stream=self.config.execute_stream,
        )

    def health_report(self) -> worker_pb2.WorkerHealth:
        """What the next heartbeat reports."""
        return health_to_proto(self.core.health())

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Serve, then register and start the health stream (without waiting for it)."""
        port = tls.add_port(self.server, self.config.listen, self.config.tls, LISTEN)
        self.address = self.config.advertise or f"{self.config.listen.rpartition(':')[0]}:{port}"
        await self.server.start()
        metrics = ""
        if self.config.metrics_listen:
            metrics_port = serve_metrics(self.config.metrics_listen, self.metrics.registry)
            metrics = ports.bound(self.config.metrics_listen, metrics_port)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self.membership.start()
        ports.announce(
            "worker", self.config.ports_file, ports.bound(self.config.listen, port), metrics
        )

    async def wait_registered(self, timeout: float) -> None:
        await asyncio.wait_for(self.membership.registered.wait(), timeout)

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain and stop: safe to call more than once."""
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        grace = self.config.drain_timeout if grace is None else grace
        self.core.draining = True
        self.membership.beat_now()
        await self.health.enter_graceful_shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.core.drain(grace)
        await self.servicer.answered(max(deadline - loop.time(), 0.5))
        # The last beat says "draining"; closing the stream removes the worker.
        await self.membership.stop()
        await self.server.stop(max(deadline - loop.time(), 0.5))
        await self.membership.close()
        self.core.close()
        self._stopped.set()


def worker_tier(name: str, backend: Backend, skill_tiers: Iterable[Tier] = ()) -> Tier:
    """The declared tier; by default builtin without a model, small with one, or the
    highest tier one of the worker's own skills declares if that is higher."""
    if not name:
        has_model = backend.model and backend.name != "sim"
        return max([Tier.SMALL if has_model else Tier.BUILTIN, *skill_tiers])
    return Tier.parse(name)


def offered_skills(
    builtin: Iterable[str], own: Mapping[str, SkillDefinition]
) -> frozenset[str] | None:
    """What a worker offers: the built-in skills named (all its backend runs if none are,
    or none at all if it has skills of its own) and its own skills."""
    named = frozenset(builtin)
    if not own:
        return named or None
    return named | frozenset(own)
