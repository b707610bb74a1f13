"""`agentmesh run`: the whole mesh on one machine, each part a supervised child process.

The scheduler, and workers on the offline builtin backend (or, with `--backend local`,
on llama.cpp's server with a small model, itself a child). The children are the CLI's
own commands (`agentmesh scheduler`, `agentmesh worker`, `agentmesh local-model`), so
the workers come from `agentmesh-agents`, which must be installed beside the scheduler
(`pip install 'agentmesh-scheduler[run]'`; `make install` installs every part).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.store import is_database_url
from agentmesh.scheduler.supervisor import Child, Supervisor
from agentmesh.server import logs, ports
from agentmesh.tls import TlsConfig

#: llama.cpp's server slots under `--backend local`: at least this many, and one a worker.
LOCAL_MODEL_SLOTS = 2

#: The scheduler's deadlines under `--backend local` (unless set): a step on the local
#: model takes seconds, and a ticket's plan queues behind others for the slots.
LOCAL_SCHEDULER_ENV = {"AGENTMESH_DEFAULT_DEADLINE": "300", "AGENTMESH_ATTEMPT_TIMEOUT": "120"}


def run_mesh(args: argparse.Namespace) -> int:
    """Start the mesh and supervise it until SIGINT or SIGTERM."""
    if not any(e.name == "agents" for e in entry_points(group="agentmesh.commands")):
        raise SystemExit(
            "agentmesh run: the workers come from agentmesh-agents, which is not installed: "
            "pip install 'agentmesh-scheduler[run]'"
        )
    logs.configure(args.log_level)
    config = SchedulerConfig.from_env()
    certs = _certs(args, config)
    host = config.listen.rpartition(":")[0]
    # Every child says where it listens in a ports file (port 0 picks a free port): the
    # scheduler in AGENTMESH_PORTS_FILE if set, the rest in a folder of this run's own.
    run_dir = Path(tempfile.mkdtemp(prefix="agentmesh-run-"))
    scheduler_ports = Path(config.ports_file) if config.ports_file else run_dir / "scheduler.json"
    scheduler = Child("scheduler", ("scheduler",))
    model: Child | None = None
    model_url = ""
    shares: list[int] = []
    if args.backend == "local":
        # llama.cpp's server with Gemma 3 270M (`make local-model`), supervised like the
        # others, with a slot for each worker at least; workers reach it through the
        # `local` backend (the openai one, whose grammars hold answers to their schemas).
        model_port = ports.free_port()
        slots = max(LOCAL_MODEL_SLOTS, args.workers)
        shares = slot_shares(slots, args.workers)
        model_args = ("--host", "127.0.0.1", "--port", str(model_port), "--parallel", str(slots))
        model = Child("local-model", ("local-model", *model_args))
        model_url = f"http://127.0.0.1:{model_port}"
        scheduler_env = tuple((k, v) for k, v in LOCAL_SCHEDULER_ENV.items() if k not in os.environ)
        scheduler = Child("scheduler", ("scheduler",), scheduler_env)
    scheduler = _with_env(scheduler, AGENTMESH_PORTS_FILE=str(scheduler_ports))
    if certs is not None:
        scheduler = _with_env(scheduler, **tls_env(certs, "scheduler"))
    workers: list[tuple[Child, str]] = []
    for i in range(1, args.workers + 1):
        env = [("AGENTMESH_WORKER_LISTEN", f"{host}:0")]
        if model is not None:
            env += [
                ("AGENTMESH_BACKEND", "local"),
                ("AGENTMESH_MODEL_BASE_URL", f"{model_url}/v1"),
                # The worker's share of the server's slots: together they fill them, no more.
                ("AGENTMESH_MODEL_CONCURRENCY", str(shares[i - 1])),
            ]
        worker_id = f"{'local' if model else 'builtin'}-{i}"
        if certs is not None:
            # The id its certificate names, the only one the scheduler accepts from it.
            worker_id = f"worker-{i}"
            env += tls_env(certs, worker_id).items()
        metrics_listen = worker_metrics(config, i)
        env += [
            ("AGENTMESH_WORKER_ID", worker_id),
            ("AGENTMESH_WORKER_STORE", worker_store(config, worker_id)),
            ("AGENTMESH_WORKER_METRICS_LISTEN", metrics_listen),
            ("AGENTMESH_PORTS_FILE", str(run_dir / f"{worker_id}.json")),
        ]
        workers.append((Child(f"worker-{i}", ("worker",), tuple(env)), worker_id))

    async def supervise() -> None:
        children = [model, scheduler, *(child for child, _ in workers)]
        supervisor = Supervisor([child for child in children if child])
        supervisor.stop_on_signals()
        tasks = []
        if model is not None:
            tasks.append(await supervisor.start(model))
            await _until(lambda: ports.http_ok(f"{model_url}/health"), 300.0)
        scheduler_ports.unlink(missing_ok=True)
        tasks.append(await supervisor.start(scheduler))
        bound = await _announced(scheduler_ports, 30.0)
        # Restarted, a child comes back on the ports it got, where the others find it.
        pinned = {"AGENTMESH_LISTEN": bound.grpc, "AGENTMESH_METRICS_LISTEN": bound.metrics}
        supervisor.redefine(_with_env(scheduler, **pinned))
        serving = dataclasses.replace(config, listen=bound.grpc, metrics_listen=bound.metrics)
        targets: list[dict[str, Any]] = []
        started = [(_with_env(c, AGENTMESH_SCHEDULER=bound.grpc), i) for c, i in workers]
        client_tls = None
        if certs is not None:
            client_tls = TlsConfig.from_env(tls_env(certs, "client"), domain=config.tls.domain)
        with Client(bound.grpc, timeout=2.0, tls=client_tls) as client:
            await _until(lambda: _ready(client), 30.0)
            tasks += [await supervisor.start(child) for child, _ in started]
            await _until(lambda: len(_workers(client)) >= args.workers, 60.0)
        for child, worker_id in started:
            metrics = (await _announced(run_dir / f"{worker_id}.json", 30.0)).metrics
            if metrics:
                targets.append({"targets": [metrics], "labels": {"worker": worker_id}})
                supervisor.redefine(_with_env(child, AGENTMESH_WORKER_METRICS_LISTEN=metrics))
        if args.prometheus_targets:
            # JSON is YAML too: Prometheus reads it as a file_sd target file.
            text = json.dumps(targets, indent=2) + "\n"
            await asyncio.to_thread(Path(args.prometheus_targets).write_text, text)
        _banner(serving, model_url and f"{model_url} ({sum(shares)} slots)", certs)
        try:
            await supervisor.wait_stopped()
        finally:
            if args.prometheus_targets:
                await asyncio.to_thread(Path(args.prometheus_targets).unlink, missing_ok=True)
        for task in tasks:
            task.cancel()

    try:
        asyncio.run(supervise())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _with_env(child: Child, **env: str) -> Child:
    """The child with these variables set (over any it had)."""
    return dataclasses.replace(child, env=(*child.env, *env.items()))


async def _announced(path: Path, timeout: float) -> ports.Bound:
    """The addresses a child wrote to its ports file, once it has."""
    await _until(path.exists, timeout)
    bound = ports.read(path)
    if bound is None:  # written once, never removed while the child runs
        raise SystemExit(f"agentmesh: {path} holds no addresses")
    return bound


def slot_shares(slots: int, workers: int) -> list[int]:
    """Each worker's share of the server's slots: together exactly `slots`, at least 1 each."""
    if workers < 1 or slots < workers:
        raise ValueError(f"{slots} slots cannot give {workers} workers one each")
    return [slots // workers + (1 if i < slots % workers else 0) for i in range(workers)]


def worker_metrics(config: SchedulerConfig, i: int) -> str:
    """Worker i's own /metrics address: AGENTMESH_WORKER_METRICS_LISTEN's port plus i - 1,
    or by default the scheduler's metrics port plus i (9465, 9466, ...); off when the
    variable is set empty, or when unset and the scheduler's metrics are off."""
    base = os.environ.get("AGENTMESH_WORKER_METRICS_LISTEN")
    if base is None:
        if not config.metrics_listen:
            return ""
        host, _, port = config.metrics_listen.rpartition(":")
        first = int(port) + 1
    elif not base:
        return ""
    else:
        host, _, port = base.rpartition(":")
        first = int(port)
    if int(port) == 0:
        return f"{host}:0"  # any free port, for each
    return f"{host}:{first + i - 1}"


def worker_store(config: SchedulerConfig, worker_id: str) -> str:
    """A worker's own file of finished subtasks, beside the scheduler's store.

    Empty (memory only) when the scheduler's store is: a mesh told to keep
    nothing on disk writes no worker files either. With the scheduler's store in a
    PostgreSQL database, the files go where the default store would be.
    """
    if not config.store:
        return ""
    beside = SchedulerConfig.store if is_database_url(config.store) else config.store
    return str(Path(beside).parent / f"worker-{worker_id}.db")


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("agentmesh: the mesh did not come up in time")
        await asyncio.sleep(0.2)


def _ready(client: Client) -> bool:
    try:
        client.list_workers()
    except AgentmeshError:
        return False
    return True


def _workers(client: Client) -> list[Any]:
    try:
        return client.list_workers()
    except AgentmeshError:
        return []


def _certs(args: argparse.Namespace, config: SchedulerConfig) -> Path | None:
    """The folder of `--tls DIR`, holding a certificate for the scheduler, each worker and
    the client (`agentmesh certs DIR`); SystemExit when one is missing."""
    if not getattr(args, "tls", None):
        if config.tls.enabled:
            raise SystemExit(
                "agentmesh run: AGENTMESH_TLS_* name one certificate, and each worker needs "
                "its own: use `agentmesh run --tls DIR` on the files `agentmesh certs DIR` makes"
            )
        return None
    folder = Path(args.tls)
    for stem in ("ca", "scheduler", "client", *(f"worker-{i}" for i in range(1, args.workers + 1))):
        if not (folder / f"{stem}.pem").is_file():
            raise SystemExit(
                f"agentmesh run: {folder} has no {stem}.pem: make the certificates with "
                f"`agentmesh certs {folder} --workers {args.workers}`"
            )
    return folder


def tls_env(folder: Path, stem: str) -> dict[str, str]:
    """The AGENTMESH_TLS_* variables of the part whose files in `folder` are `stem`."""
    return {
        "AGENTMESH_TLS_CA": str(folder / "ca.pem"),
        "AGENTMESH_TLS_CERT": str(folder / f"{stem}.pem"),
        "AGENTMESH_TLS_KEY": str(folder / f"{stem}-key.pem"),
    }


def _banner(config: SchedulerConfig, model: str = "", certs: Path | None = None) -> None:
    metrics = f"http://{config.metrics_listen}/metrics" if config.metrics_listen else "(off)"
    target = "" if config.listen == SchedulerConfig.listen else f" --target {config.listen}"
    grpcurl = "-plaintext"
    if certs is not None:
        target += f" --tls-ca {certs}/ca.pem --tls-cert {certs}/client.pem"
        target += f" --tls-key {certs}/client-key.pem"
        grpcurl = f"-cacert {certs}/ca.pem -cert {certs}/client.pem -key {certs}/client-key.pem"
    model_line = f"the local model (llama.cpp) on {model}\n" if model else ""
    print(
        f"""
agentmesh is running: scheduler on {config.listen}, metrics on {metrics}
{model_line}
Try it (from the repository root, in another terminal):

  .venv/bin/agentmesh submit examples/tickets/01_refund_broken_laptop_en.json{target}

  .venv/bin/grpcurl {grpcurl} -d @ {config.listen} agentmesh.v1.SchedulerService/Submit \\
    < examples/grpcurl/submit_ticket.json

  .venv/bin/agentmesh workers{target}

Stop with Ctrl-C.
""",
        flush=True,
    )
