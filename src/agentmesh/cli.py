"""The `agentmesh` command line: run the mesh, or talk to one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from agentmesh import logs, ports
from agentmesh.agents.backends import BACKENDS, make_backend
from agentmesh.agents.config import WorkerConfig
from agentmesh.client import Client, Goal, Source
from agentmesh.errors import AgentmeshError, DeadlineExceeded
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.telemetry import configure_tracing
from agentmesh.v1 import scheduler_pb2

if TYPE_CHECKING:
    from agentmesh.supervisor import Child

#: What `agentmesh run` starts: workers offering every builtin skill.
DEFAULT_WORKERS = 3

#: `agentmesh submit`'s default deadline, in seconds: long enough for a ticket's plan on a
#: small local model under load; offline workers answer in milliseconds anyway.
SUBMIT_TIMEOUT = 300.0


@contextlib.contextmanager
def tracing(service_name: str) -> Iterator[None]:
    """Tracing for a server process (when configured), flushed when it ends."""
    provider = configure_tracing(service_name)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()


def _target(args: argparse.Namespace) -> str:
    return args.target or os.environ.get("AGENTMESH_SCHEDULER", "127.0.0.1:50051")


class UsageError(Exception):
    """A mistake in the command line or its input files: one line, exit status 2."""


def _read_input(source: str) -> dict[str, Any]:
    """A request input: a JSON object from a `.json` file, or from another file or stdin
    ('-') that holds one; any other text becomes {"text": ...}."""
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {source}: {reason}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        if source.endswith(".json"):
            raise UsageError(f"{source} is not valid JSON: {error}") from None
        return {"text": raw}
    if isinstance(data, dict):
        return data
    if source.endswith(".json"):
        raise UsageError(f"{source} holds a JSON {type(data).__name__}, not an object")
    return {"text": raw}


def _as_dict(message: Any) -> Any:
    """A message as JSON-ready data, with the .proto field names grpcurl prints."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _print_json(message: Any) -> None:
    print(json.dumps(_as_dict(message), indent=2, ensure_ascii=False))


# -- commands ---------------------------------------------------------------------


def cmd_scheduler(args: argparse.Namespace) -> int:
    from agentmesh.scheduler.server import SchedulerServer
    from agentmesh.scheduler.store import StoreError

    overrides = {"listen": args.listen} if args.listen else {}
    if args.policy:
        overrides["policy"] = args.policy
    config = SchedulerConfig.from_env(**overrides)

    async def serve() -> None:
        # gRPC's aio server binds to the loop it is made in: make it inside this one.
        try:
            server = SchedulerServer(config)
        except StoreError as error:
            raise SystemExit(f"agentmesh: {error}") from None
        await server.run()

    with tracing("agentmesh-scheduler"):
        asyncio.run(serve())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from agentmesh.agents.runtime import Worker

    overrides: dict[str, Any] = {}
    if args.skills:
        overrides["skills"] = tuple(s.strip() for s in args.skills.split(",") if s.strip())
    if args.backend:
        overrides["backend"] = args.backend
    if args.capacity:
        overrides["capacity"] = args.capacity
    if args.target:
        overrides["scheduler"] = args.target
    config = WorkerConfig.from_env(**overrides)

    async def serve() -> None:
        try:
            worker = Worker(config, make_backend(config.backend, os.environ))
        except ValueError as error:
            raise SystemExit(f"agentmesh: {error}") from None
        await worker.run()

    with tracing("agentmesh-worker"):
        asyncio.run(serve())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agentmesh.supervisor import Child, Supervisor

    config = SchedulerConfig.from_env()
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
        # openai backend, the one whose answers its grammars hold to their schemas.
        from agentmesh import localmodel

        model_port = localmodel.free_port()
        slots = max(localmodel.LocalModelConfig.parallel, args.workers)
        shares = localmodel.slot_shares(slots, args.workers)
        model = localmodel.child(model_port, parallel=slots)
        model_url = f"http://127.0.0.1:{model_port}"
        # Deadlines sized for a model on a CPU, unless set: a step takes seconds, not ms.
        scheduler = Child(
            "scheduler",
            ("scheduler",),
            tuple((k, v) for k, v in localmodel.SCHEDULER_ENV.items() if k not in os.environ),
        )
    scheduler = _with_env(scheduler, AGENTMESH_PORTS_FILE=str(scheduler_ports))
    workers: list[tuple[Child, str]] = []
    for i in range(1, args.workers + 1):
        backend = "builtin"
        env = [("AGENTMESH_WORKER_LISTEN", f"{host}:0")]
        if model is not None:
            backend = "openai"
            env += [
                ("AGENTMESH_BACKEND", backend),
                ("AGENTMESH_MODEL", localmodel.MODEL_ALIAS),
                ("AGENTMESH_MODEL_BASE_URL", f"{model_url}/v1"),
                # A variable that holds no key: a real OPENAI_API_KEY must not go to it.
                ("AGENTMESH_API_KEY_ENV", "AGENTMESH_LOCAL_MODEL_API_KEY"),
                ("AGENTMESH_MODEL_MAX_TOKENS", "512"),
                # The worker's share of the server's slots: together they fill them, no more.
                ("AGENTMESH_MODEL_CONCURRENCY", str(shares[i - 1])),
                # Penalties keep the tiny model from repeating itself (whitespace included).
                ("AGENTMESH_MODEL_EXTRA_BODY", localmodel.EXTRA_BODY),
            ]
        worker_id = f"{backend}-{i}"
        metrics_listen = _worker_metrics(config, i)
        env += [
            ("AGENTMESH_WORKER_ID", worker_id),
            ("AGENTMESH_WORKER_STORE", _worker_store(config, worker_id)),
            ("AGENTMESH_WORKER_METRICS_LISTEN", metrics_listen),
            ("AGENTMESH_PORTS_FILE", str(run_dir / f"{worker_id}.json")),
        ]
        workers.append((Child(f"worker-{i}", ("worker",), tuple(env)), worker_id))

    async def supervise() -> None:
        if model is not None:
            from agentmesh.localmodel import healthy
        children = [model, scheduler, *(child for child, _ in workers)]
        supervisor = Supervisor([child for child in children if child])
        supervisor.stop_on_signals()
        tasks = []
        if model is not None:
            tasks.append(await supervisor.start(model))
            await _until(lambda: healthy(model_url), 300.0)
        scheduler_ports.unlink(missing_ok=True)
        tasks.append(await supervisor.start(scheduler))
        bound = await _announced(scheduler_ports, 30.0)
        # Restarted, a child comes back on the ports it got, where the others find it.
        pinned = {"AGENTMESH_LISTEN": bound.grpc, "AGENTMESH_METRICS_LISTEN": bound.metrics}
        supervisor.redefine(_with_env(scheduler, **pinned))
        serving = dataclasses.replace(config, listen=bound.grpc, metrics_listen=bound.metrics)
        targets: list[dict[str, Any]] = []
        started = [(_with_env(c, AGENTMESH_SCHEDULER=bound.grpc), i) for c, i in workers]
        with Client(bound.grpc, timeout=2.0) as client:
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
        _banner(serving, model_url and f"{model_url} ({sum(shares)} slots)")
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
    assert bound is not None  # written once, never removed while the child runs
    return bound


def _worker_metrics(config: SchedulerConfig, i: int) -> str:
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


def _worker_store(config: SchedulerConfig, worker_id: str) -> str:
    """A worker's own file of finished subtasks, beside the scheduler's store.

    Empty (memory only) when the scheduler's store is: a mesh told to keep
    nothing on disk writes no worker files either.
    """
    if not config.store:
        return ""
    return str(Path(config.store).parent / f"worker-{worker_id}.db")


async def _until(condition: Any, timeout: float) -> None:
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


def _banner(config: SchedulerConfig, model: str = "") -> None:
    metrics = f"http://{config.metrics_listen}/metrics" if config.metrics_listen else "(off)"
    target = "" if config.listen == SchedulerConfig.listen else f" --target {config.listen}"
    model_line = f"the local model (llama.cpp) on {model}\n" if model else ""
    print(
        f"""
agentmesh is running: scheduler on {config.listen}, metrics on {metrics}
{model_line}
Try it (from the repository root, in another terminal):

  .venv/bin/agentmesh submit examples/tickets/01_refund_broken_laptop_en.json{target}

  .venv/bin/grpcurl -plaintext -d @ {config.listen} agentmesh.v1.SchedulerService/Submit \\
    < examples/grpcurl/submit_ticket.json

  .venv/bin/agentmesh workers{target}

Stop with Ctrl-C.
""",
        flush=True,
    )


def _source(args: argparse.Namespace) -> Source:
    return Goal(args.goal) if args.goal else args.workflow


def cmd_submit(args: argparse.Namespace) -> int:
    data = _read_input(args.input)
    options: dict[str, Any] = {"request_id": args.request_id, "cost_budget_usd": args.budget}
    try:
        _submit(args, data, options)
    except DeadlineExceeded as error:
        raise DeadlineExceeded(f"{error.message}; {_deadline_hint(args)}") from None
    return 0


def _deadline_hint(args: argparse.Namespace) -> str:
    return (
        f"the request did not fit in its deadline of {args.timeout:g} s (--timeout): "
        "a model on a CPU takes seconds a step, so give it more"
    )


def _submit(args: argparse.Namespace, data: dict[str, Any], options: dict[str, Any]) -> None:
    with Client(_target(args), timeout=args.timeout) as client:
        if args.no_stream:
            result = client.submit(_source(args), data, **options)
            _print_json(result)
            _say_if_late(args, result)
            return
        for message in client.stream_submit(_source(args), data, **options):
            event = message.WhichOneof("event")
            if event == "plan":
                steps = ", ".join(s.id for s in message.plan.steps)
                print(f"[{message.request_id}] plan: {steps}", file=sys.stderr)
            elif event == "subtask":
                e = message.subtask
                kind = scheduler_pb2.SubtaskEventKind.Name(e.kind)
                kind = kind.removeprefix("SUBTASK_EVENT_KIND_").lower()
                where = f" on {e.worker_id}" if e.worker_id else ""
                detail = f" ({e.message})" if e.message else ""
                print(f"  {e.subtask_id}: {kind}{where}{detail}", file=sys.stderr)
            else:
                _print_json(message.result)
                _say_if_late(args, message.result)


def _say_if_late(args: argparse.Namespace, request: Any) -> None:
    """A request that ran out of time says so, and how to give it more."""
    if request.error.code == "DEADLINE_EXCEEDED":
        print(f"agentmesh: {_deadline_hint(args)}", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> int:
    data = _read_input(args.input)
    with Client(_target(args), timeout=args.timeout) as client:
        _print_json(client.decompose(_source(args), data))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with Client(_target(args), timeout=args.timeout) as client:
        workers = client.list_workers(args.capability)
    if args.json:
        print(json.dumps([_as_dict(w) for w in workers], indent=2))
        return 0
    if not workers:
        which = f"offers capability {args.capability!r}" if args.capability else "is registered"
        print(f"agentmesh: no worker {which}", file=sys.stderr)
        return 1
    print(
        f"{'WORKER':<18} {'STATE':<9} {'IN-FLIGHT':>9} {'LATENCY':>9} {'ERRORS':>7}  CAPABILITIES"
    )
    for w in workers:
        state = scheduler_pb2.WorkerState.Name(w.state).removeprefix("WORKER_STATE_").lower()
        latency = w.latency_estimate.ToTimedelta().total_seconds() * 1000
        print(
            f"{w.info.worker_id:<18} {state:<9} {w.in_flight:>4}/{w.info.capacity:<4} "
            f"{latency:>7.1f}ms {w.error_rate:>6.1%}  {','.join(w.info.capabilities)}"
        )
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    # Imported here: rich is only needed by this command.
    from agentmesh.top import run_top

    if not args.interval > 0:
        raise SystemExit(f"agentmesh top: --interval must be above 0, not {args.interval:g}")
    return run_top(_target(args), interval=args.interval, once=args.once)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="agentmesh", description=__doc__)
    top.add_argument("--log-level", default=os.environ.get("AGENTMESH_LOG_LEVEL", "INFO"))
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="the scheduler plus workers, supervised")
    run.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    run.add_argument(
        "--backend",
        choices=["builtin", "local"],
        default="builtin",
        help="builtin: offline workers (default); local: workers on a local llama.cpp model "
        "(openai backend, a server slot each), after `make local-model`",
    )
    run.add_argument(
        "--prometheus-targets",
        metavar="FILE",
        help="write the workers' /metrics addresses to FILE, a Prometheus file_sd target "
        "file (removed on exit)",
    )
    run.set_defaults(handler=cmd_run)

    scheduler = commands.add_parser("scheduler", help="serve the scheduler")
    scheduler.add_argument(
        "--listen", help="host:port (default AGENTMESH_LISTEN or 127.0.0.1:50051)"
    )
    scheduler.add_argument("--policy", choices=["latency_weighted", "p2c", "round_robin"])
    scheduler.set_defaults(handler=cmd_scheduler)

    worker = commands.add_parser("worker", help="serve a worker agent")
    worker.add_argument(
        "--skills", help="comma-separated skills (default: all the backend can run)"
    )
    worker.add_argument("--backend", choices=BACKENDS, help="model backend (default builtin)")
    worker.add_argument("--capacity", type=int)
    worker.add_argument("--target", help="scheduler host:port")
    worker.set_defaults(handler=cmd_worker)

    for name, handler, help_text in (
        ("submit", cmd_submit, "submit a request and print the JSON result"),
        ("plan", cmd_plan, "print the plan a workflow makes for an input"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("input", nargs="?", default="-", help="JSON or text file; - for stdin")
        sub.add_argument("--workflow", default="support_ticket")
        sub.add_argument("--goal", help="a free-form goal for the planner, instead of a workflow")
        sub.add_argument("--target", help="scheduler host:port")
        sub.add_argument(
            "--timeout",
            type=float,
            default=SUBMIT_TIMEOUT if name == "submit" else 60.0,
            help="seconds the request may take (its deadline)",
        )
        if name == "submit":
            sub.add_argument("--request-id", default="")
            sub.add_argument(
                "--budget", type=float, default=0.0, help="cost budget in US dollars (0: none)"
            )
            sub.add_argument("--no-stream", action="store_true", help="no progress events")
        sub.set_defaults(handler=handler)

    workers = commands.add_parser("workers", help="list the workers and their health")
    workers.add_argument("--capability", default="")
    workers.add_argument("--target", help="scheduler host:port")
    workers.add_argument("--timeout", type=float, default=10.0)
    workers.add_argument("--json", action="store_true")
    workers.set_defaults(handler=cmd_workers)

    top_view = commands.add_parser("top", help="a live view of the workers, queues and requests")
    top_view.add_argument("--target", help="scheduler host:port")
    top_view.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    top_view.add_argument("--once", action="store_true", help="print one frame and exit")
    top_view.set_defaults(handler=cmd_top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.handler(args))
    except AgentmeshError as error:
        print(f"agentmesh: {error.code_name}: {error.message}", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"agentmesh {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
