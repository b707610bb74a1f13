"""`agentmesh run` (what `make run` starts): the commands it prints work exactly as printed.

The mesh runs on port 0: the scheduler reports the ports it got, and the
workers, the banner and the Prometheus targets follow them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import pytest

from agentmesh.server import ports
from tests.support.mesh import ANY_PORT, ROOT, agentmesh_run

pytestmark = pytest.mark.integration


def printed_commands(banner: str) -> list[str]:
    """The shell commands in the banner (lines starting with .venv/bin/, continuations joined)."""
    commands: list[str] = []
    current = ""
    for line in banner.splitlines():
        line = line.strip()
        if current:
            current += " " + line
        elif line.startswith(".venv/bin/"):
            current = line
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
        else:
            commands.append(current)
            current = ""
    return commands


def test_run_prints_commands_that_work_and_stops_cleanly(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "agentmesh").exists():
        pytest.fail(".venv/bin is missing: run the suite through `make test`")
    ports_file = tmp_path / "scheduler.ports.json"
    env = {
        **os.environ,
        "AGENTMESH_LISTEN": ANY_PORT,
        "AGENTMESH_METRICS_LISTEN": ANY_PORT,
        "AGENTMESH_PORTS_FILE": str(ports_file),
        "AGENTMESH_STORE": str(tmp_path / "scheduler.db"),
    }
    targets = tmp_path / "agentmesh-workers-run.yml"
    with agentmesh_run("--prometheus-targets", str(targets), env=env, timeout=90) as (run, lines):
        banner = "".join(lines)
        bound = ports.read(ports_file)
        assert bound is not None and not bound.grpc.endswith(":0"), bound
        assert f"scheduler on {bound.grpc}," in banner, banner
        assert f"http://{bound.metrics}/metrics" in banner, banner
        commands = printed_commands(banner)
        assert len(commands) == 3
        for command in commands:
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                env={k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")},
            )
            assert result.returncode == 0, (command, result.stderr)
            if "submit" in command.lower():
                printed = json.loads(result.stdout)
                request = printed.get("request", printed)  # grpcurl wraps it in the response
                assert request["state"] == "REQUEST_STATE_SUCCEEDED"
        # Every worker serves its own /metrics, on a port of its own, listed for Prometheus
        # by worker id at the address it reported.
        listed = json.loads(targets.read_text())
        assert [t["labels"]["worker"] for t in listed] == [f"builtin-{i}" for i in (1, 2, 3)]
        addresses = [address for t in listed for address in t["targets"]]
        assert len(set(addresses)) == 3 and bound.metrics not in addresses, addresses
        for target in listed:
            url = f"http://{target['targets'][0]}/metrics"
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            assert "agentmesh_worker_subtasks_total" in body
            assert f'worker="{target["labels"]["worker"]}"' in body
    assert run.returncode == 0
    assert not targets.exists()  # no stale targets once the mesh is gone
    # Each worker kept what it finished in its own file beside the scheduler's store.
    stores = sorted(tmp_path.glob("worker-*.db"))
    assert [p.name for p in stores] == [f"worker-builtin-{i}.db" for i in (1, 2, 3)]
    assert sum(stored_results(p) for p in stores) > 0


def stored_results(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
