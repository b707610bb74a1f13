"""A setting with a bad value stops the scheduler or a worker at start, with one line that
names it and no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

BASE = {"AGENTMESH_LISTEN": "127.0.0.1:0", "AGENTMESH_METRICS_LISTEN": "", "AGENTMESH_STORE": ""}


def start(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", command],
        env={**clean, **BASE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("scheduler", "AGENTMESH_LISTEN"),
        ("scheduler", "AGENTMESH_METRICS_LISTEN"),
        ("worker", "AGENTMESH_WORKER_LISTEN"),
        ("worker", "AGENTMESH_WORKER_METRICS_LISTEN"),
    ],
)
def test_an_address_already_taken_stops_with_one_line_naming_it(
    command: str, variable: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        run = start(command, **{variable: address})
    assert run.returncode == 1
    # gRPC's core logs its own line first when a bind fails; ours is the last.
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("agentmesh: ") and address in last, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("command", "variable", "value", "said"),
    [
        ("scheduler", "AGENTMESH_OFFLOAD", "sometimes", "AGENTMESH_OFFLOAD must be one of"),
        ("scheduler", "AGENTMESH_QUEUE_ORDER", "fifo", "unknown queue order 'fifo'"),
        ("scheduler", "AGENTMESH_SHED_LATE", "maybe", "AGENTMESH_SHED_LATE='maybe'"),
        ("scheduler", "AGENTMESH_POLICY", "bogus", "unknown policy 'bogus'"),
        ("worker", "AGENTMESH_EXECUTE_STREAM", "maybe", "AGENTMESH_EXECUTE_STREAM='maybe'"),
    ],
)
def test_a_bad_setting_stops_with_one_line(
    command: str, variable: str, value: str, said: str
) -> None:
    run = start(command, **{variable: value})
    assert run.returncode == 1
    assert said in run.stderr and run.stderr.startswith("agentmesh: "), run.stderr
    assert "Traceback" not in run.stderr
