"""The scheduler's settings, as frozen data read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmesh.scheduler.hedging import HedgePolicy, parse_hedge_after
from agentmesh.scheduler.queues import CRITICAL_PATH, check_order
from agentmesh.scheduler.retry import RetryPolicy
from agentmesh.server import settings
from agentmesh.server.tokens import TokenSettings
from agentmesh.tls import TlsConfig


@dataclass(frozen=True)
class SchedulerConfig:
    listen: str = "127.0.0.1:50051"
    """host:port the scheduler serves gRPC on; port 0 picks a free one (see ports_file).
    Env AGENTMESH_LISTEN. Default 127.0.0.1:50051."""
    metrics_listen: str = "127.0.0.1:9464"
    """host:port of the Prometheus /metrics endpoint; empty turns it off, port 0 picks a
    free one. Env AGENTMESH_METRICS_LISTEN. Default 127.0.0.1:9464."""
    ports_file: str = ""
    """A file the scheduler writes, once serving, with the addresses it bound, as JSON
    (`agentmesh.server.ports`). Env AGENTMESH_PORTS_FILE. Default: none."""
    policy: str = "latency_weighted"
    """Balancing policy: latency_weighted, p2c or round_robin. Env AGENTMESH_POLICY."""
    heartbeat_interval: float = 1.0
    """Seconds between a worker's health reports. Env AGENTMESH_HEARTBEAT_INTERVAL. Default 1 s."""
    liveness_factor: float = 2.5
    """A worker silent for this many heartbeat intervals is evicted.
    Env AGENTMESH_LIVENESS_FACTOR. Default 2.5."""
    default_deadline: float = 30.0
    """Deadline in seconds of a call that sets none.
    Env AGENTMESH_DEFAULT_DEADLINE. Default 30 s."""
    min_deadline: float = 0.05
    """A call whose deadline leaves less than this many seconds is refused at once
    with DEADLINE_EXCEEDED. Env AGENTMESH_MIN_DEADLINE. Default 0.05 s."""
    attempt_timeout: float = 20.0
    """Longest one attempt of a subtask may take. Env AGENTMESH_ATTEMPT_TIMEOUT. Default 20 s."""
    max_input_bytes: int = 1 << 20
    """Largest request input accepted, in bytes. Env AGENTMESH_MAX_INPUT_BYTES. Default 1 MiB."""
    max_steps: int = 64
    """Most steps a plan may have. Env AGENTMESH_MAX_STEPS. Default 64."""
    queue_bound: int = 10_000
    """Most subtasks waiting per capability. Env AGENTMESH_QUEUE_BOUND. Default 10000."""
    max_active_requests: int = 2_000
    """Most requests running at once; past it, RESOURCE_EXHAUSTED.
    Env AGENTMESH_MAX_ACTIVE_REQUESTS. Default 2000."""
    aging: float = 5.0
    """Seconds of waiting worth one priority class. Env AGENTMESH_AGING. Default 5 s."""
    queue_order: str = CRITICAL_PATH
    """How a queue orders the subtasks of one priority class: critical_path (least slack
    first: the deadline less the expected remaining critical path of the request after the
    subtask) or deadline (earliest deadline first). Env AGENTMESH_QUEUE_ORDER.
    Default critical_path."""
    retained_requests: int = 10_000
    """Finished requests kept for GetRequest. Env AGENTMESH_RETAINED_REQUESTS. Default 10000."""
    store: str = ".agentmesh/scheduler.db"
    """Where the scheduler keeps requests, so a restarted scheduler resumes them: a SQLite
    file (WAL), or a PostgreSQL database as a postgresql:// (or postgres://) URL, which needs
    the scheduler's `postgresql` extra (psycopg); empty keeps them in memory only.
    Env AGENTMESH_STORE. Default .agentmesh/scheduler.db in the working directory."""
    replica: str = ""
    """This scheduler's id among the replicas sharing one PostgreSQL store: it owns the
    requests it runs under that name. Unique among live schedulers; a replica that keeps
    its id across restarts (a StatefulSet's pod name) resumes its own requests at once.
    Env AGENTMESH_REPLICA. Default: host name, pid and a random part. Unused with SQLite,
    whose file one scheduler alone may use."""
    lease: float = 5.0
    """Seconds a replica's ownership of its running requests lasts without renewal (on the
    database server's clock; renewed every third of it): when a replica dies or stalls
    this long, the others take its requests over. Shorter fails over sooner; longer
    tolerates longer pauses (GC, a slow database) without a takeover. PostgreSQL store
    only. Env AGENTMESH_LEASE. Default 5 s."""
    worker_wait: float = 5.0
    """Longest a subtask waits, within its deadline, for a worker offering its capability
    to register when none is live (after an eviction, or while a restarted scheduler
    waits for workers), and for the worker it prefers after a restart; then it fails
    with UNAVAILABLE, or goes to another worker. Env AGENTMESH_WORKER_WAIT.
    Default 5 s (twice the default liveness timeout)."""
    recovery_delay: float = 2.5
    """Seconds a restarted scheduler waits for workers to register again before it
    resumes unfinished requests. Env AGENTMESH_RECOVERY_DELAY. Default 2.5 s."""
    workflows_dir: Path | None = None
    """Extra workflow templates (*.toml), overriding built-in ones by name.
    Env AGENTMESH_WORKFLOWS_DIR. Default none."""
    shed_late: bool = True
    """A subtask that waited in its queue until its request can no longer finish by its
    deadline (by the scheduler's estimates: its own attempt and the rest of the plan's
    critical path after it) fails at once with DEADLINE_EXCEEDED (reason
    DEADLINE_UNREACHABLE) instead of taking a worker's slot from work that can still
    finish. Env AGENTMESH_SHED_LATE. Default on."""
    offload: str = "auto"
    """Plan fragments offloaded to workers (see docs/architecture.md, "Offload"): auto
    hands a worker the steps that follow a step it gets while the scheduler is loaded
    (its event loop busy offload_busy of the time, or late by offload_lag); always does
    it whatever the load; off never. Env AGENTMESH_OFFLOAD. Default auto."""
    offload_busy: float = 0.8
    """The share of the time the event loop's thread is on the CPU, smoothed, from which
    the scheduler counts as loaded (offload auto). Env AGENTMESH_OFFLOAD_BUSY.
    Default 0.8."""
    offload_lag: float = 0.005
    """The event loop's lag (how late a timer runs), smoothed, in seconds, from which the
    scheduler counts as loaded (offload auto). Env AGENTMESH_OFFLOAD_LAG.
    Default 0.005 s."""
    offload_max_steps: int = 8
    """Most steps in one offloaded fragment, its first included.
    Env AGENTMESH_OFFLOAD_MAX_STEPS. Default 8."""
    allow_foreign_address: bool = False
    """A worker may register an address that is not on the host it connects from (behind
    NAT or a proxy); off: such a registration is PERMISSION_DENIED, and without TLS so is
    a host name (`scheduler.addresses`). Env AGENTMESH_ALLOW_FOREIGN_ADDRESS. Default off."""
    max_streams_per_connection: int = 4096
    """Calls at once on one client connection (HTTP/2 MAX_CONCURRENT_STREAMS); more wait
    in the client. Env AGENTMESH_MAX_STREAMS_PER_CONNECTION. Default 4096."""
    max_metadata_bytes: int = 16_384
    """Largest metadata (headers) of a call; larger is refused by gRPC.
    Env AGENTMESH_MAX_METADATA_BYTES. Default 16 KiB."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy; env AGENTMESH_RETRY_MAX_ATTEMPTS, AGENTMESH_RETRY_INITIAL_BACKOFF,
    AGENTMESH_RETRY_BUDGET, AGENTMESH_RETRY_BUDGET_RESERVE."""
    hedge: HedgePolicy = field(default_factory=HedgePolicy)
    """Hedging; env AGENTMESH_HEDGE_AFTER, AGENTMESH_HEDGE_BUDGET. Default off."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    """Mutual TLS (`agentmesh.tls`); env AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY,
    AGENTMESH_TLS_CA, AGENTMESH_TLS_DOMAIN, AGENTMESH_INSECURE. Default off: loopback only."""
    auth: TokenSettings = field(default_factory=TokenSettings)
    """Callers' bearer tokens; env AGENTMESH_AUTH_PUBLIC_KEY or AGENTMESH_AUTH_JWKS,
    AGENTMESH_AUTH_AUDIENCE, AGENTMESH_AUTH_ISSUER, AGENTMESH_AUTH_LEEWAY. Default: no
    key, tokens are not checked."""

    def __post_init__(self) -> None:
        check_order(self.queue_order)

    @property
    def liveness_timeout(self) -> float:
        return self.heartbeat_interval * self.liveness_factor

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SchedulerConfig:
        env = os.environ if env is None else env
        values = settings.from_env(cls, env, skip=frozenset({"retry", "hedge", "tls", "auth"}))
        retry = RetryPolicy(
            max_attempts=int(env.get("AGENTMESH_RETRY_MAX_ATTEMPTS", RetryPolicy.max_attempts)),
            initial_backoff=float(
                env.get("AGENTMESH_RETRY_INITIAL_BACKOFF", RetryPolicy.initial_backoff)
            ),
            budget=float(env.get("AGENTMESH_RETRY_BUDGET", RetryPolicy.budget)),
            budget_reserve=float(
                env.get("AGENTMESH_RETRY_BUDGET_RESERVE", RetryPolicy.budget_reserve)
            ),
        )
        hedge = HedgePolicy(
            after=parse_hedge_after(env.get("AGENTMESH_HEDGE_AFTER", "")),
            budget=float(env.get("AGENTMESH_HEDGE_BUDGET", HedgePolicy.budget)),
        )
        tls = TlsConfig.from_env(env)
        auth = TokenSettings.from_env(env)
        values |= {"retry": retry, "hedge": hedge, "tls": tls, "auth": auth}
        return cls(**{**values, **overrides})
