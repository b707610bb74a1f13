"""A worker's settings, as frozen data read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentmesh.server import settings
from agentmesh.tls import TlsConfig


@dataclass(frozen=True)
class WorkerConfig:
    scheduler: str = "127.0.0.1:50051"
    """The scheduler to register with, or several, comma-separated: every replica of a
    scheduler sharing one PostgreSQL store (the worker registers with each).
    Env AGENTMESH_SCHEDULER. Default 127.0.0.1:50051."""
    listen: str = "127.0.0.1:0"
    """host:port to serve WorkerService on; port 0 picks a free one.
    Env AGENTMESH_WORKER_LISTEN. Default 127.0.0.1:0."""
    advertise: str = ""
    """Address the scheduler should call; default: the listen address with
    its actual port. Env AGENTMESH_WORKER_ADVERTISE."""
    metrics_listen: str = ""
    """host:port of the worker's /metrics endpoint; empty turns it off, port 0 picks a
    free one. Env AGENTMESH_WORKER_METRICS_LISTEN. Default off."""
    ports_file: str = ""
    """A file the worker writes, once serving, with the addresses it bound, as JSON
    (`agentmesh.server.ports`). Env AGENTMESH_PORTS_FILE. Default: none."""
    worker_id: str = ""
    """Stable id; default: a random one. Env AGENTMESH_WORKER_ID."""
    skills: tuple[str, ...] = ()
    """Built-in skills to offer; default: every skill the backend can run, or none when
    the worker has skills modules or skills dirs. Env AGENTMESH_SKILLS (comma-separated)."""
    skills_modules: tuple[str, ...] = ()
    """Skills written in Python to offer besides (or instead of) the built-in ones: `.py`
    files or dotted module names (`agentmesh worker --skills-module`, docs/skills.md).
    Env AGENTMESH_SKILLS_MODULES (comma-separated). Default: none."""
    skills_dirs: tuple[str, ...] = ()
    """Folders of skills declared for the worker's model, one `*.toml` file a skill
    (`agentmesh worker --skills-dir`, docs/skills.md); they need a model backend.
    Env AGENTMESH_SKILLS_DIRS (comma-separated). Default: none."""
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
    execute_stream: bool = True
    """Declare that the worker serves ExecuteStream, and plan fragments on it
    (WorkerInfo.fragments), so that the scheduler sends it subtasks in batches on one
    stream; off: one Execute call per subtask, and no fragments.
    Env AGENTMESH_EXECUTE_STREAM. Default on."""
    store: str = ""
    """SQLite file of finished subtasks, kept across restarts; empty keeps them in
    memory only. Env AGENTMESH_WORKER_STORE. Default: memory."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    """Mutual TLS (`agentmesh.tls`): the worker serves with its certificate, accepts
    Execute only from the scheduler's, and registers with it; its worker id defaults to
    the one its certificate names. Env AGENTMESH_TLS_CERT, AGENTMESH_TLS_KEY,
    AGENTMESH_TLS_CA, AGENTMESH_TLS_DOMAIN, AGENTMESH_INSECURE. Default off: loopback only."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerConfig:
        env = os.environ if env is None else env
        values = settings.from_env(
            cls,
            env,
            prefix_overrides={
                "listen": "AGENTMESH_WORKER_LISTEN",
                "advertise": "AGENTMESH_WORKER_ADVERTISE",
                "metrics_listen": "AGENTMESH_WORKER_METRICS_LISTEN",
                "worker_id": "AGENTMESH_WORKER_ID",
                "store": "AGENTMESH_WORKER_STORE",
            },
            skip=frozenset({"tls"}),
        )
        return cls(**{**values, "tls": TlsConfig.from_env(env), **overrides})
