"""`agentmesh run` (what `make run` starts): the commands it prints work exactly as printed."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.mesh import ROOT, agentmesh_run, free_port

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
    port, metrics = free_port(), free_port()
    env = {
        **os.environ,
        "AGENTMESH_LISTEN": f"127.0.0.1:{port}",
        "AGENTMESH_METRICS_LISTEN": f"127.0.0.1:{metrics}",
        "AGENTMESH_STORE": str(tmp_path / "scheduler.db"),
    }
    targets = tmp_path / "agentmesh-workers-run.yml"
    with agentmesh_run("--prometheus-targets", str(targets), env=env, timeout=90) as (run, lines):
        banner = "".join(lines)
        assert f"127.0.0.1:{port}" in banner and f"http://127.0.0.1:{metrics}/metrics" in banner
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
        # Every worker serves its own /metrics, listed for Prometheus by worker id.
        listed = json.loads(targets.read_text())
        assert [t["labels"]["worker"] for t in listed] == [f"builtin-{i}" for i in (1, 2, 3)]
        assert [t["targets"] for t in listed] == [[f"127.0.0.1:{metrics + i}"] for i in (1, 2, 3)]
        for target in listed:
            body = urllib.request.urlopen(f"http://{target['targets'][0]}/metrics", timeout=5)
            assert b"agentmesh_worker_subtasks_total" in body.read()
    assert run.returncode == 0
    assert not targets.exists()  # no stale targets once the mesh is gone
    # Each worker kept what it finished in its own file beside the scheduler's store.
    stores = sorted(tmp_path.glob("worker-*.db"))
    assert [p.name for p in stores] == [f"worker-builtin-{i}.db" for i in (1, 2, 3)]
    assert sum(stored_results(p) for p in stores) > 0


def stored_results(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
