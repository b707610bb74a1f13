"""The scheduler's subcommands of the `agentmesh` CLI: `scheduler`, `run` and `token`.

Registered under the `agentmesh.commands` entry point group (see agentmesh.cli):
the CLI offers them wherever `agentmesh-scheduler` is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from agentmesh import tls
from agentmesh.tls import DEFAULT_DOMAIN

#: What `agentmesh run` starts: workers offering every builtin skill.
DEFAULT_WORKERS = 3


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run` and `scheduler` to the CLI's subcommands (importing little: the CLI
    builds its parser for every command)."""
    run = commands.add_parser("run", help="the scheduler plus workers, supervised")
    run.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    run.add_argument(
        "--backend",
        choices=["builtin", "local"],
        default="builtin",
        help="builtin: offline workers (default); local: workers on a local llama.cpp model "
        "(a server slot each), after `make local-model`",
    )
    run.add_argument(
        "--prometheus-targets",
        metavar="FILE",
        help="write the workers' /metrics addresses to FILE, a Prometheus file_sd target "
        "file (removed on exit)",
    )
    run.add_argument(
        "--tls",
        metavar="DIR",
        help="mutual TLS on the certificates `agentmesh certs DIR --workers N` made: the "
        "workers are worker-1 ... worker-N",
    )
    run.set_defaults(handler=cmd_run)

    scheduler = commands.add_parser("scheduler", help="serve the scheduler")
    scheduler.add_argument(
        "--listen", help="host:port (default AGENTMESH_LISTEN or 127.0.0.1:50051)"
    )
    scheduler.add_argument("--policy", choices=["latency_weighted", "p2c", "round_robin"])
    tls.add_arguments(scheduler)
    scheduler.set_defaults(handler=cmd_scheduler)

    certs = commands.add_parser(
        "certs", help="a development CA and certificates for a scheduler, workers and a client"
    )
    certs.add_argument("dir", metavar="DIR", help="where to write them (made if missing)")
    certs.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="default 3")
    certs.add_argument(
        "--domain", default=DEFAULT_DOMAIN, help=f"the mesh's domain (default {DEFAULT_DOMAIN})"
    )
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        dest="hosts",
        help="another name or address of the scheduler for its certificate (repeatable)",
    )
    certs.set_defaults(handler=cmd_certs)

    token = commands.add_parser(
        "token", help="mint a development bearer token for callers (docs/security.md)"
    )
    token.add_argument("--role", required=True, choices=["client", "admin"])
    token.add_argument("--tenant", default="", help="the caller's tenant (required for client)")
    token.add_argument("--key", required=True, help="PEM private key (RSA, EC or Ed25519)")
    token.add_argument(
        "--audience",
        default=os.environ.get("AGENTMESH_AUTH_AUDIENCE", ""),
        help="aud claim (default AGENTMESH_AUTH_AUDIENCE)",
    )
    token.add_argument(
        "--issuer",
        default=os.environ.get("AGENTMESH_AUTH_ISSUER", ""),
        help="iss claim (default AGENTMESH_AUTH_ISSUER)",
    )
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds it is valid (3600)")
    token.add_argument("--subject", default="", help="sub claim: who the caller is")
    token.add_argument("--kid", default="", help="the key's id in a JWKS")
    token.set_defaults(handler=cmd_token)


def cmd_run(args: argparse.Namespace) -> int:
    from agentmesh.scheduler.run import run_mesh

    return run_mesh(args)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from agentmesh.scheduler.config import SchedulerConfig
    from agentmesh.scheduler.server import SchedulerServer
    from agentmesh.scheduler.store import StoreError
    from agentmesh.server import logs, telemetry

    logs.configure(args.log_level)
    overrides = {"listen": args.listen} if args.listen else {}
    if args.policy:
        overrides["policy"] = args.policy
    try:
        config = SchedulerConfig.from_env(**overrides, tls=tls.from_args(args))
    except ValueError as error:  # a setting that does not parse
        raise SystemExit(f"agentmesh: {error}") from None

    async def serve() -> None:
        # gRPC's aio server binds to the loop it is made in: make it inside this one.
        try:
            server = SchedulerServer(config)
        except (StoreError, ValueError) as error:  # a bad store, or a setting's bad value
            raise SystemExit(f"agentmesh: {error}") from None
        try:
            await server.run()
        except OSError as error:  # an address taken, or not this host's
            raise SystemExit(f"agentmesh: {error}") from None

    with telemetry.tracing("agentmesh-scheduler"):
        asyncio.run(serve())
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from agentmesh.scheduler.certs import write_mesh

    if args.workers < 0:
        raise SystemExit(f"agentmesh certs: --workers must be 0 or more, not {args.workers}")
    folder = Path(args.dir)
    written = write_mesh(folder, workers=args.workers, domain=args.domain, hosts=args.hosts)
    for path in written:
        print(path)
    print(
        f"\nA scheduler with TLS on:\n  AGENTMESH_TLS_CA={folder}/ca.pem "
        f"AGENTMESH_TLS_CERT={folder}/scheduler.pem AGENTMESH_TLS_KEY={folder}/scheduler-key.pem"
        " agentmesh scheduler"
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print a signed token; a mistake in the arguments is one line and exit status 2."""
    from agentmesh.server.tokens import load_private_key, mint

    problem = ""
    if not args.audience or not args.issuer:
        problem = "--audience and --issuer are required (or AGENTMESH_AUTH_AUDIENCE and _ISSUER)"
    elif args.role == "client" and not args.tenant:
        problem = "a client token needs --tenant"
    elif not args.ttl > 0:
        problem = f"--ttl must be above 0, not {args.ttl:g}"
    if not problem:
        try:
            key = load_private_key(Path(args.key))
            print(
                mint(
                    key,
                    role=args.role,
                    tenant=args.tenant,
                    audience=args.audience,
                    issuer=args.issuer,
                    ttl=args.ttl,
                    subject=args.subject,
                    kid=args.kid,
                )
            )
            return 0
        except ValueError as error:
            problem = str(error)
    print(f"agentmesh token: {problem}", file=sys.stderr)
    return 2
