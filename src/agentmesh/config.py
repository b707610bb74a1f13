"""Configuration as frozen data, read once from the environment.

Every setting has a default stated where it is defined and an
`AGENTMESH_*` environment variable that overrides it (see the README's
configuration table). Nothing here is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from agentmesh.scheduler.hedging import HedgePolicy
from agentmesh.scheduler.retry import RetryPolicy

C = TypeVar("C")


@dataclass(frozen=True)
class SchedulerConfig:
    listen: str = "127.0.0.1:50051"
    """host:port the scheduler serves gRPC on. Env AGENTMESH_LISTEN. Default 127.0.0.1:50051."""
    metrics_listen: str = "127.0.0.1:9464"
    """host:port of the Prometheus /metrics endpoint; empty turns it off.
    Env AGENTMESH_METRICS_LISTEN. Default 127.0.0.1:9464."""
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
    retained_requests: int = 10_000
    """Finished requests kept for GetRequest. Env AGENTMESH_RETAINED_REQUESTS. Default 10000."""
    store: str = ".agentmesh/scheduler.db"
    """SQLite file the scheduler keeps requests in (WAL), so a restarted scheduler
    resumes them; empty keeps them in memory only. Env AGENTMESH_STORE.
    Default .agentmesh/scheduler.db in the working directory."""
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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy; env AGENTMESH_RETRY_MAX_ATTEMPTS, AGENTMESH_RETRY_INITIAL_BACKOFF,
    AGENTMESH_RETRY_BUDGET, AGENTMESH_RETRY_BUDGET_RESERVE."""
    hedge: HedgePolicy = field(default_factory=HedgePolicy)
    """Hedging; env AGENTMESH_HEDGE_AFTER, AGENTMESH_HEDGE_BUDGET. Default off."""

    @property
    def liveness_timeout(self) -> float:
        return self.heartbeat_interval * self.liveness_factor

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> SchedulerConfig:
        env = os.environ if env is None else env
        values = _from_env(cls, env)
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
            after=env.get("AGENTMESH_HEDGE_AFTER", HedgePolicy.after),
            budget=float(env.get("AGENTMESH_HEDGE_BUDGET", HedgePolicy.budget)),
        )
        return cls(**{**values, "retry": retry, "hedge": hedge, **overrides})


@dataclass(frozen=True)
class WorkerConfig:
    scheduler: str = "127.0.0.1:50051"
    """The scheduler to register with. Env AGENTMESH_SCHEDULER. Default 127.0.0.1:50051."""
    listen: str = "127.0.0.1:0"
    """host:port to serve WorkerService on; port 0 picks a free one.
    Env AGENTMESH_WORKER_LISTEN. Default 127.0.0.1:0."""
    advertise: str = ""
    """Address the scheduler should call; default: the listen address with
    its actual port. Env AGENTMESH_WORKER_ADVERTISE."""
    metrics_listen: str = ""
    """host:port of the worker's /metrics endpoint; empty turns it off.
    Env AGENTMESH_WORKER_METRICS_LISTEN. Default off."""
    worker_id: str = ""
    """Stable id; default: a random one. Env AGENTMESH_WORKER_ID."""
    skills: tuple[str, ...] = ()
    """Skills to offer; default: every skill the backend can run.
    Env AGENTMESH_SKILLS (comma-separated)."""
    backend: str = "builtin"
    """Model backend. Env AGENTMESH_BACKEND. Default builtin (offline, no model)."""
    capacity: int = 4
    """Subtasks run at once. Env AGENTMESH_CAPACITY. Default 4."""
    tier: str = ""
    """Model tier the worker declares: builtin, small or large. Env AGENTMESH_TIER.
    Default: builtin for the builtin and sim backends, small for a model."""
    drain_timeout: float = 10.0
    """Seconds a draining worker waits for in-flight subtasks.
    Env AGENTMESH_DRAIN_TIMEOUT. Default 10 s."""
    results_kept: int = 10_000
    """Finished subtasks remembered for idempotent replay.
    Env AGENTMESH_RESULTS_KEPT. Default 10000."""
    store: str = ""
    """SQLite file of finished subtasks, kept across restarts; empty keeps them in
    memory only. Env AGENTMESH_WORKER_STORE. Default: memory."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerConfig:
        env = os.environ if env is None else env
        values = _from_env(
            cls,
            env,
            prefix_overrides={
                "listen": "AGENTMESH_WORKER_LISTEN",
                "advertise": "AGENTMESH_WORKER_ADVERTISE",
                "metrics_listen": "AGENTMESH_WORKER_METRICS_LISTEN",
                "worker_id": "AGENTMESH_WORKER_ID",
                "store": "AGENTMESH_WORKER_STORE",
            },
        )
        return cls(**{**values, **overrides})


def _from_env(
    cls: type[C], env: Mapping[str, str], prefix_overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Field values found in env as AGENTMESH_<FIELD> (or a named variable), converted."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in ("retry", "hedge"):
            continue
        name = (prefix_overrides or {}).get(f.name, f"AGENTMESH_{f.name.upper()}")
        raw = env.get(name)
        if raw is None or (raw == "" and f.name not in ("metrics_listen", "store")):
            continue
        values[f.name] = _convert(f.type, raw, name)
    return values


def _convert(kind: Any, raw: str, name: str) -> Any:
    kind = str(kind)
    try:
        if kind == "float":
            return float(raw)
        if kind == "int":
            return int(raw)
        if kind.startswith("tuple"):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        if kind.startswith("Path"):
            return Path(raw)
        return raw
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind}") from None
