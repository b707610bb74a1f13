"""`python -m bench.core_cpu [--requests N] [--plan s2|chain] [--offload off|always]`: the
scheduler core's own CPU per subtask.

S2's requests (7 independent steps) through a `SchedulerCore` in this
process, on the real clock, with 48 in flight, to two registered workers
reached through a transport that answers at once: no gRPC, no other
process, so what is measured is the scheduling itself (planning checks,
queues, dispatch, the store, metrics) and little of the machine's noise.
Run with the SQLite store and with requests in memory only; prints the
process CPU per subtask, and the store's writer thread's share of it.
The gRPC edges cost the rest of S2's `scheduler_cpu_us_per_subtask`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agentmesh.scheduler.calls import ExecuteResult, Follower, SubtaskCall
from agentmesh.scheduler.config import SchedulerConfig
from agentmesh.scheduler.convert import plan_from_proto
from agentmesh.scheduler.core import SchedulerCore
from agentmesh.scheduler.planning import Source
from agentmesh.scheduler.registry import WorkerRecord, WorkerSpec
from agentmesh.scheduler.store import SqliteStore
from agentmesh.server.clock import SystemClock
from agentmesh.server.metrics import SchedulerMetrics
from agentmesh.server.skills import SKILLS
from bench import s2_throughput, s8_overload

#: A schema-valid output for every step of S2's plan, at once.
OUTPUT: dict[str, Any] = {"label": "positive", "score": 0.5}


class Instant:
    """A transport whose workers answer every attempt at once."""

    async def execute(
        self,
        worker: WorkerRecord,
        call: SubtaskCall,
        attempt: int,
        timeout: float,
        followers: Sequence[Follower] = (),
    ) -> ExecuteResult:
        for follower in followers:
            follower.stop = _nothing
            follower.done.set_result(ExecuteResult(OUTPUT))
        return ExecuteResult(OUTPUT)

    async def forget(self, worker_id: str) -> None:
        pass


def _nothing() -> None:
    pass


def _thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The plans measured: S2's seven independent steps, or S8's chain of five.
PLANS = {
    "s2": (s2_throughput.plan, s2_throughput.DATA),
    "chain": (s8_overload.plan, s8_overload.DATA),
}


async def measure(
    store: SqliteStore | None,
    requests: int,
    concurrency: int = 48,
    plan: str = "s2",
    offload: str = "off",
) -> str:
    core = SchedulerCore(
        SchedulerConfig(store="", offload=offload),
        Instant(),
        clock=SystemClock(),
        store=store,
        observer=SchedulerMetrics(CollectorRegistry()),
    )
    for i in (1, 2):
        core.register(
            WorkerSpec(
                f"echo-{i}",
                f"127.0.0.1:{9000 + i}",
                frozenset(SKILLS),
                capacity=64,
                skills=tuple(SKILLS.values()),
                execute_stream=True,
                fragments=True,
            )
        )
    make_plan, data = PLANS[plan]
    source = Source(plan=plan_from_proto(make_plan()))
    room = asyncio.Semaphore(concurrency)
    steps = len(source.plan.steps) if source.plan else 0

    async def one() -> None:
        async with room:
            record = await core.submit("", source, dict(data), timeout=30.0)
            if record.error is not None:
                raise RuntimeError(f"a request failed: {record.error}")

    await asyncio.gather(*(one() for _ in range(requests // 10)))  # warm up
    writer = store._writer._thread.native_id if store is not None else None
    writer0 = _thread_cpu(writer) if writer is not None else 0.0
    cpu0 = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    subtasks = requests * steps
    cpu = (time.process_time() - cpu0) / subtasks * 1e6
    where = "sqlite store" if store else "memory only"
    line = f"{plan}, offload {offload}, {where}: {cpu:.0f} µs CPU per subtask"
    if writer is not None:
        line += (
            f" (the store's writer thread: {(_thread_cpu(writer) - writer0) / subtasks * 1e6:.0f})"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_cpu", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests measured per run")
    parser.add_argument("--plan", choices=sorted(PLANS), default="s2", help="the plan run")
    parser.add_argument("--offload", default="off", help="AGENTMESH_OFFLOAD: off or always")
    args = parser.parse_args(argv)
    options = {"plan": args.plan, "offload": args.offload}
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.db")
        try:
            print(asyncio.run(measure(store, args.requests, **options)))
        finally:
            store.close()
    print(asyncio.run(measure(None, args.requests, **options)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
