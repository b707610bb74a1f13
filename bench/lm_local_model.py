"""LM the local model: `agentmesh run --backend local` answering the example tickets.

Not a model of a system but the real thing on this machine: llama.cpp's
server with Gemma 3 270M, the scheduler and three `openai` workers (one
server slot each), started as `make run BACKEND=local` starts them. The
twelve example tickets (English, German, French, Spanish, Portuguese,
Italian) go in four at a time through the client, each with `agentmesh
submit`'s default deadline; the run measures tickets per minute and the
tickets' latency. The targets: every ticket answered, and the model server
idle within a few seconds of the last answer. Latency has no goal: it is
what a 270M model makes of 2 shared cores. Skipped (not failed) in smoke
runs (a model takes minutes, not seconds) and when the local model is not
installed (`make local-model`); `python -m bench --only LM` runs it alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentmesh.client import Client
from agentmesh.server import ports
from agentmesh.v1 import scheduler_pb2
from bench.harness import ROOT
from bench.stats import ScenarioResult, Target, median, percentile

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))
AT_ONCE = 4
DEADLINE = 300.0  # `agentmesh submit`'s default
IDLE_GOAL = 3.0


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    del seed  # the model decodes greedily for extraction: no randomness to seed
    if smoke:
        return _skipped("smoke runs take seconds; a real model takes minutes")
    try:
        from agentmesh.agents import localmodel

        localmodel.binary_path()
        localmodel.model_path()
    except RuntimeError as error:
        return _skipped(str(error))
    tickets = TICKETS
    with _LocalMesh(log_dir) as mesh:
        started = time.monotonic()
        with ThreadPoolExecutor(AT_ONCE) as pool:
            outcomes = list(pool.map(mesh.ticket, tickets))
        elapsed = time.monotonic() - started
        last = time.monotonic()
        while mesh.busy_slots() and time.monotonic() - last < 30:
            time.sleep(0.05)
        idle_after = time.monotonic() - last
    latencies = [seconds for seconds, ok in outcomes]
    answered = sum(ok for _, ok in outcomes)
    per_minute = answered / elapsed * 60
    return ScenarioResult(
        key="LM",
        title="local model (Gemma 3 270M on llama.cpp): the example tickets",
        metrics={
            "tickets": len(tickets),
            "succeeded": answered,
            "at_once": AT_ONCE,
            "model_server_slots": mesh.slots,
            "tickets_per_minute": per_minute,
            "p50_s": median(latencies),
            "p95_s": percentile(latencies, 0.95),
            "max_s": max(latencies),
            "idle_after_last_answer_s": idle_after,
        },
        targets={
            "all_tickets_succeeded": Target(answered / len(tickets), 1.0, ">="),
            "model_idle_after_last_answer": Target(idle_after, IDLE_GOAL, "<=", unit="s"),
        },
        notes=[f"{mesh.slots} slots; latency includes waiting for a slot ({AT_ONCE} at once)"],
        latencies={"LM local model": {"ticket": latencies}},
    )


def _skipped(why: str) -> ScenarioResult:
    return ScenarioResult(
        key="LM",
        title="local model (skipped)",
        metrics={"skipped": why},
        targets={},
        notes=[f"skipped: {why}"],
    )


class _LocalMesh:
    """`agentmesh run --backend local` on free ports, for the length of a `with`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.target = ""
        self.model_url = ""
        self.slots = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _LocalMesh:
        ports_file = self.log_dir / "lm-scheduler.ports.json"
        ports_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "AGENTMESH_LISTEN": "127.0.0.1:0",
            "AGENTMESH_PORTS_FILE": str(ports_file),
            "AGENTMESH_METRICS_LISTEN": "",
            "AGENTMESH_STORE": str(self.log_dir / "lm-scheduler.db"),
        }
        self._log = open(self.log_dir / "lm-run.log", "w")  # closed in __exit__
        self._process = subprocess.Popen(
            [sys.executable, "-m", "agentmesh", "run", "--backend", "local"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines: list[str] = []
        stdout = self._process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
        deadline = time.monotonic() + 300
        pattern = r"local model \(llama\.cpp\) on (\S+) \((\d+) slots\)"
        while not any("Stop with Ctrl-C" in line for line in lines):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"agentmesh run --backend local did not come up: {lines}")
            time.sleep(0.2)
        found = re.search(pattern, "".join(lines))
        assert found, lines
        self.model_url, self.slots = found.group(1), int(found.group(2))
        bound = ports.read(ports_file)  # written before the banner
        assert bound is not None, lines
        self.target = bound.grpc
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._log.close()

    def ticket(self, path: Path) -> tuple[float, bool]:
        """One ticket: (seconds to the answer, whether it succeeded)."""
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        started = time.monotonic()
        with Client(self.target, timeout=DEADLINE) as client:
            try:
                request = client.submit("support_ticket", data)
            except Exception:  # a failed ticket is a result, not a crash
                return time.monotonic() - started, False
        ok = request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
        return time.monotonic() - started, ok

    def busy_slots(self) -> list[int]:
        with urllib.request.urlopen(f"{self.model_url}/slots", timeout=5) as response:
            return [s["id"] for s in json.load(response) if s["is_processing"]]
