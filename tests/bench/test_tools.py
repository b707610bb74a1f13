"""The hot path's measuring tools: the profile summary and the core's CPU run."""

import subprocess
import sys

from bench.harness import ROOT
from bench.profile import part_of, summarise

STACKS = [
    "main (/x/agentmesh/cli.py:3);run (/py/asyncio/runners.py:9);"
    "Dispatcher.run (/w/scheduler/src/agentmesh/scheduler/dispatcher.py:140) 6",
    "main (/x/agentmesh/cli.py:3);run (/py/asyncio/runners.py:9) 3",
    "Thread.run (/py/threading.py:982);_commit (/w/src/agentmesh/scheduler/storewriter.py:9) 1",
    "not a stack line",
]


def test_parts_are_named_by_module() -> None:
    assert part_of("/w/scheduler/src/agentmesh/scheduler/dispatcher.py") == (
        "agentmesh.scheduler.dispatcher"
    )
    assert part_of("/venv/site-packages/grpc/aio/_call.py") == "grpc"
    assert part_of("/py/asyncio/events.py") == "asyncio"
    assert part_of("/py/somewhere/else.py") == "other"


def test_the_summary_counts_self_and_inclusive_shares() -> None:
    total, lines = summarise(STACKS)
    assert total == 10
    text = "\n".join(lines)
    assert "| `agentmesh.scheduler.dispatcher` | 60.0% |" in text  # self, by part
    assert "| `asyncio` | 30.0% |" in text
    assert "| `Dispatcher.run (scheduler/dispatcher.py)` | 60.0% |" in text
    assert "| `main (agentmesh/cli.py)` | 90.0% |" in text  # inclusive


def test_an_empty_profile_says_so() -> None:
    assert summarise([]) == (0, ["no samples"])


CORE_CPU = (sys.executable, "-m", "bench.core_cpu")


def test_the_core_cpu_run_reports_both_stores() -> None:
    run = subprocess.run(
        [*CORE_CPU, "--requests", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    sqlite, memory = run.stdout.splitlines()
    assert sqlite.startswith("s2, offload off, sqlite store: ") and "writer thread" in sqlite
    assert memory.startswith("s2, offload off, memory only: ") and "µs CPU per subtask" in memory


def test_the_core_cpu_run_takes_chains_with_offload() -> None:
    run = subprocess.run(
        [*CORE_CPU, "--requests", "40", "--plan", "chain", "--offload", "always"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("chain, offload always, sqlite store: ")
