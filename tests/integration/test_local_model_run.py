"""`make run BACKEND=local` as a user runs it: every example ticket is answered.

`agentmesh run --backend local` starts llama.cpp's server with Gemma 3 270M,
the scheduler and model workers; the twelve example tickets go in four at a
time through `agentmesh submit`, as printed in the banner. A model this small
gives poor answers, but every one must be valid against its skill's schema,
and in time: no ticket may fail, and none may run out of its deadline. Once
the last answer is in, the model server must be idle, not still generating
for requests the mesh gave up on.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agentmesh.server import ports
from agentmesh.server.skills import SKILLS, output_violations
from tests.support.mesh import ANY_PORT, ROOT, agentmesh_run, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.llm]

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))
AT_ONCE = 4


def busy_slots(model_url: str) -> list[int]:
    """The ids of the model server's slots that are generating (llama.cpp's /slots)."""
    with urllib.request.urlopen(f"{model_url}/slots", timeout=5) as response:
        return [s["id"] for s in json.load(response) if s["is_processing"]]


def submit(path: Path, target: str) -> tuple[float, dict[str, Any], str]:
    """One ticket through `agentmesh submit`, with its default deadline: (seconds, result,
    what it printed on stderr)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "agentmesh", "submit", str(path), "--target", target, "--no-stream"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, (path.name, done.stderr)
    return elapsed, json.loads(done.stdout), done.stderr


def check_ticket(name: str, result: dict[str, Any]) -> None:
    """SUCCEEDED, every required step valid against its schema, nothing out of time."""
    subtasks = result.get("subtasks", [])
    assert result["state"] == "REQUEST_STATE_SUCCEEDED", (name, result.get("error"), subtasks)
    assert result.get("error", {}).get("code", "") != "DEADLINE_EXCEEDED", name
    for step in subtasks:
        where = (name, step["id"], step.get("error"))
        assert step.get("error", {}).get("code", "") != "DEADLINE_EXCEEDED", where
        if step["capability"] == "translate" and step["state"] == "SUBTASK_STATE_SKIPPED":
            continue  # optional: skipped when no worker translates, or for English
        assert step["state"] == "SUBTASK_STATE_SUCCEEDED", where
        assert not output_violations(SKILLS[step["capability"]], step["output"]), where


@pytest.mark.timeout(900)
def test_make_run_backend_local_answers_every_example_ticket(tmp_path: Path) -> None:
    assert len(TICKETS) == 12
    ports_file = tmp_path / "scheduler.ports.json"
    env = {
        **os.environ,
        "AGENTMESH_LISTEN": ANY_PORT,
        "AGENTMESH_PORTS_FILE": str(ports_file),
        "AGENTMESH_METRICS_LISTEN": "",
        "AGENTMESH_STORE": str(tmp_path / "scheduler.db"),
    }
    with agentmesh_run("--backend", "local", env=env, timeout=300) as (_, lines):
        found = re.search(r"local model \(llama\.cpp\) on (\S+) \((\d+) slots\)", "".join(lines))
        assert found, "".join(lines)
        model_url, slots = found.group(1), int(found.group(2))
        bound = ports.read(ports_file)
        assert bound is not None
        target = bound.grpc

        with ThreadPoolExecutor(AT_ONCE) as pool:
            answers = list(pool.map(lambda path: submit(path, target), TICKETS))
        last_answer = time.monotonic()
        # The server stops generating once nothing is asked of it: poll until idle.
        wait_for(lambda: not busy_slots(model_url), 10, "the model server to be idle")
        idle_after = time.monotonic() - last_answer

        for path, (_, result, _) in zip(TICKETS, answers, strict=True):
            check_ticket(path.name, result)
        latencies = sorted(seconds for seconds, _, _ in answers)
        steps = [s for _, r, _ in answers for s in r.get("subtasks", [])]
        ran = [s for s in steps if s["state"] == "SUBTASK_STATE_SUCCEEDED"]
        attempts = sum(s.get("attempts", 0) for s in ran)
        print(
            f"\nlocal model, {slots} slots: {len(TICKETS)} tickets ({AT_ONCE} at a time) "
            f"p50 {statistics.median(latencies):.1f} s, max {latencies[-1]:.1f} s; "
            f"{len(ran)} steps answered in {attempts} attempts ({len(steps) - len(ran)} skipped); "
            f"idle {idle_after:.1f} s after the last answer"
        )
