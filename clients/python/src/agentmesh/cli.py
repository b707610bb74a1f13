"""The `agentmesh` command line: run the mesh, or talk to one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from agentmesh import health, tls
from agentmesh.client import BASIC, FULL, Client, Goal, Source
from agentmesh.errors import AgentmeshError, DeadlineExceeded
from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import struct_to_dict

#: `agentmesh submit --view`: how much of the finished request it prints.
VIEWS = {"full": FULL, "basic": BASIC}

#: `agentmesh submit`'s default deadline, in seconds: long enough for a ticket's plan on a
#: small local model under load; offline workers answer in milliseconds anyway.
SUBMIT_TIMEOUT = 300.0


def _target(args: argparse.Namespace) -> str:
    return args.target or os.environ.get("AGENTMESH_SCHEDULER", "127.0.0.1:50051")


def _tls(args: argparse.Namespace) -> tls.TlsConfig:
    """The caller's TLS settings: its --tls-* flags over the AGENTMESH_TLS_* variables."""
    try:
        return tls.from_args(args)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _client(args: argparse.Namespace) -> Client:
    """A client of the scheduler the arguments name, with their token (--token, else
    AGENTMESH_TOKEN) and TLS settings (--tls-*, else AGENTMESH_TLS_*)."""
    return Client(_target(args), timeout=args.timeout, token=args.token, tls=_tls(args))


def _add_token(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--token",
        help="bearer token for a scheduler that checks callers (default AGENTMESH_TOKEN)",
    )


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


def _source(args: argparse.Namespace) -> Source:
    return Goal(args.goal) if args.goal else args.workflow


def cmd_submit(args: argparse.Namespace) -> int:
    data = _read_input(args.input)
    options: dict[str, Any] = {
        "request_id": args.request_id,
        "cost_budget_usd": args.budget,
        "view": VIEWS[args.view],
    }
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
    with _client(args) as client:
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


def cmd_get(args: argparse.Namespace) -> int:
    """Print a request by its id: its state and, once finished, its result."""
    with _client(args) as client:
        _print_json(client.get_request(args.request_id, view=VIEWS[args.view], tenant=args.tenant))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    data = _read_input(args.input)
    with _client(args) as client:
        _print_json(client.decompose(_source(args), data))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
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


def live_skills(workers: Sequence[scheduler_pb2.WorkerStatus]) -> list[dict[str, Any]]:
    """Each capability the workers offer, once, with its contract and the workers offering it.

    A capability a worker lists without a spec (a scheduler older than skill specs)
    shows with its name and workers alone.
    """
    found: dict[str, dict[str, Any]] = {}
    for w in workers:
        specs = {s.name: s for s in w.skills}
        for name in w.info.capabilities:
            entry = found.setdefault(name, {"name": name, "description": "", "workers": []})
            entry["workers"].append(w.info.worker_id)
            spec = specs.get(name)
            if spec is not None and "input_schema" not in entry:
                difficulty = plan_pb2.Difficulty.Name(spec.difficulty)
                entry |= {
                    "description": spec.description,
                    "input_schema": struct_to_dict(spec.input_schema, "input_schema"),
                    "output_schema": struct_to_dict(spec.output_schema, "output_schema"),
                    "max_input_bytes": spec.max_input_bytes,
                    "difficulty": difficulty.removeprefix("DIFFICULTY_").lower(),
                }
    return [found[name] for name in sorted(found)]


def cmd_skills(args: argparse.Namespace) -> int:
    with _client(args) as client:
        skills = live_skills(client.list_workers())
    if args.json:
        print(json.dumps(skills, indent=2, ensure_ascii=False))
        return 0
    if not skills:
        print("agentmesh: no worker is registered", file=sys.stderr)
        return 1
    width = max(len("CAPABILITY"), *(len(s["name"]) for s in skills))
    print(f"{'CAPABILITY':<{width}}  {'WORKERS':<24}  DESCRIPTION")
    for s in skills:
        workers = ",".join(s["workers"])
        print(f"{s['name']:<{width}}  {workers:<24}  {s['description']}")
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    # Imported here: rich is only needed by this command.
    from agentmesh.top import run_top

    if not args.interval > 0:
        raise SystemExit(f"agentmesh top: --interval must be above 0, not {args.interval:g}")
    token, settings = args.token, _tls(args)

    def connect(target: str) -> Client:
        return Client(target, token=token, tls=settings)

    return run_top(_target(args), interval=args.interval, once=args.once, client_factory=connect)


def cmd_health(args: argparse.Namespace) -> int:
    settings = _tls(args)
    server_name = args.tls_server_name or ""
    if args.worker is not None:
        worker_id = args.worker or os.environ.get("AGENTMESH_WORKER_ID", "")
        if not tls.is_label(worker_id):
            raise UsageError(
                f"--worker {worker_id!r}: a worker id (a DNS label), or AGENTMESH_WORKER_ID"
            )
        server_name = tls.worker_name(worker_id, settings.domain)
    status = health.check(
        _target(args),
        settings,
        service=args.service,
        server_name=server_name,
        timeout=args.timeout,
    )
    print(status)
    return 0 if status == health.SERVING else 1


def _add_tls_arguments(command: argparse.ArgumentParser) -> None:
    tls.add_arguments(command)
    command.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the scheduler's certificate must hold (default: the --target host; "
        "env AGENTMESH_TLS_SERVER_NAME)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="agentmesh", description=__doc__)
    top.add_argument("--log-level", default=os.environ.get("AGENTMESH_LOG_LEVEL", "INFO"))
    commands = top.add_subparsers(dest="command", required=True)

    for name, handler, help_text in (
        ("submit", cmd_submit, "submit a request and print the JSON result"),
        ("plan", cmd_plan, "print the plan a workflow makes for an input"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("input", nargs="?", default="-", help="JSON or text file; - for stdin")
        sub.add_argument("--workflow", default="support_ticket")
        sub.add_argument("--goal", help="a free-form goal for the planner, instead of a workflow")
        sub.add_argument("--target", help="scheduler host:port")
        _add_token(sub)
        _add_tls_arguments(sub)
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
            sub.add_argument(
                "--view",
                choices=sorted(VIEWS),
                default="full",
                help="print the whole request, plan and subtasks included (full, the "
                "default), or its answer, state and usage alone (basic)",
            )
        sub.set_defaults(handler=handler)

    get = commands.add_parser(
        "get", help="print a request by its id: its state and, once finished, its result"
    )
    get.add_argument("request_id", metavar="REQUEST_ID")
    get.add_argument(
        "--tenant",
        help="the tenant whose request of that id to read (an admin's token may name any; "
        "default: the token's own)",
    )
    get.add_argument("--view", choices=sorted(VIEWS), default="full")
    get.add_argument("--target", help="scheduler host:port")
    _add_token(get)
    _add_tls_arguments(get)
    get.add_argument("--timeout", type=float, default=10.0)
    get.set_defaults(handler=cmd_get)

    workers = commands.add_parser("workers", help="list the workers and their health")
    workers.add_argument("--capability", default="")
    workers.add_argument("--target", help="scheduler host:port")
    _add_token(workers)
    _add_tls_arguments(workers)
    workers.add_argument("--timeout", type=float, default=10.0)
    workers.add_argument("--json", action="store_true")
    workers.set_defaults(handler=cmd_workers)

    skills = commands.add_parser(
        "skills", help="list the live capabilities: their descriptions, workers and contracts"
    )
    skills.add_argument("--target", help="scheduler host:port")
    _add_token(skills)
    _add_tls_arguments(skills)
    skills.add_argument("--timeout", type=float, default=10.0)
    skills.add_argument(
        "--json", action="store_true", help="with each skill's input and output JSON Schemas"
    )
    skills.set_defaults(handler=cmd_skills)

    probe = commands.add_parser(
        "health",
        help="ask a server's standard health service; exit 0 when it is SERVING, else 1",
    )
    probe.add_argument("--target", help="the server's host:port (default: the scheduler's)")
    probe.add_argument("--service", default="", help="a service's health (default: the server's)")
    probe.add_argument(
        "--worker",
        nargs="?",
        const="",
        metavar="ID",
        help="the target is worker ID's server: with TLS, its certificate must name "
        "<ID>.worker.<domain> (ID default: AGENTMESH_WORKER_ID, as in the worker's own pod)",
    )
    _add_tls_arguments(probe)
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    probe.set_defaults(handler=cmd_health)

    top_view = commands.add_parser("top", help="a live view of the workers, queues and requests")
    top_view.add_argument("--target", help="scheduler host:port")
    _add_token(top_view)
    _add_tls_arguments(top_view)
    top_view.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    top_view.add_argument("--once", action="store_true", help="print one frame and exit")
    top_view.set_defaults(handler=cmd_top)

    # The other parts' commands: `scheduler` and `run` (agentmesh-scheduler), `worker` and
    # `local-model` (agentmesh-agents), wherever those are installed.
    for entry in sorted(entry_points(group="agentmesh.commands"), key=lambda e: e.name):
        entry.load()(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Client commands log little; server commands install structured logs of their own.
    logging.basicConfig(level=args.log_level.upper(), format="agentmesh: %(message)s")
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
