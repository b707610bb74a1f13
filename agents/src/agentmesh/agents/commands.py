"""The agents' subcommands of the `agentmesh` CLI: `worker` and `local-model`.

Registered under the `agentmesh.commands` entry point group (see agentmesh.cli):
the CLI offers them wherever `agentmesh-agents` is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from agentmesh import tls
from agentmesh.agents.backends import BACKENDS


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `worker` and `local-model` to the CLI's subcommands."""
    worker = commands.add_parser("worker", help="serve a worker agent")
    worker.add_argument(
        "--skills",
        help="comma-separated built-in skills (default: all the backend can run, or none "
        "with --skills-module or --skills-dir)",
    )
    worker.add_argument(
        "--skills-module",
        action="append",
        dest="skills_modules",
        metavar="PATH_OR_MODULE",
        help="offer the skills written in Python in this .py file or dotted module "
        "(repeatable; see docs/skills.md)",
    )
    worker.add_argument(
        "--skills-dir",
        action="append",
        dest="skills_dirs",
        metavar="DIR",
        help="offer the skills declared for the model in DIR/*.toml (repeatable; needs "
        "--backend openai, anthropic or local; see docs/skills.md)",
    )
    worker.add_argument("--backend", choices=BACKENDS, help="model backend (default builtin)")
    worker.add_argument("--capacity", type=int)
    worker.add_argument("--target", help="scheduler host:port")
    tls.add_arguments(worker)
    worker.set_defaults(handler=cmd_worker)

    from agentmesh.agents import localmodel

    model = commands.add_parser(
        "local-model",
        help="serve the local model (llama.cpp, Gemma 3 270M; `make local-model`)",
    )
    localmodel.add_arguments(model)
    model.set_defaults(handler=localmodel.serve)


def cmd_worker(args: argparse.Namespace) -> int:
    from agentmesh.agents.backends import make_backend
    from agentmesh.agents.config import WorkerConfig
    from agentmesh.agents.runtime import Worker
    from agentmesh.server import logs, telemetry

    logs.configure(args.log_level)
    overrides: dict[str, Any] = {}
    if args.skills:
        overrides["skills"] = tuple(s.strip() for s in args.skills.split(",") if s.strip())
    if args.skills_modules:
        overrides["skills_modules"] = tuple(args.skills_modules)
    if args.skills_dirs:
        overrides["skills_dirs"] = tuple(args.skills_dirs)
    if args.backend:
        overrides["backend"] = args.backend
    if args.capacity:
        overrides["capacity"] = args.capacity
    if args.target:
        overrides["scheduler"] = args.target
    try:
        config = WorkerConfig.from_env(**overrides, tls=tls.from_args(args))
    except ValueError as error:  # a setting that does not parse
        raise SystemExit(f"agentmesh: {error}") from None

    async def serve() -> None:
        try:
            worker = Worker(config, make_backend(config.backend, os.environ))
        except ValueError as error:
            raise SystemExit(f"agentmesh: {error}") from None
        try:
            await worker.run()
        except OSError as error:  # an address taken, or not this host's
            raise SystemExit(f"agentmesh: {error}") from None

    with telemetry.tracing("agentmesh-worker"):
        asyncio.run(serve())
    return 0
