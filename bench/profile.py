"""`python -m bench.profile [--seconds N] [--out DIR] [--plan s2|chain] [--offload MODE]
[--store sqlite|postgresql]`: where the hot path's CPU goes.

Starts S2's mesh (one scheduler with its SQLite store, or with its store in a
private PostgreSQL server as S2's PostgreSQL variant has it, two echo workers),
drives it with S2's closed loop (or S8's chains), and samples the scheduler and one worker
with py-spy (`py-spy record --format raw`, idle frames excluded; each sample
pauses the process, so that its stacks are whole) while the load runs.
Writes, per process, the raw collapsed stacks (DIR/<name>.txt, for
flame-graph tools) and a summary (DIR/profile.md): the share of samples
spent in each function (self and inclusive) and in each part of the code
(gRPC, asyncio, protobuf, each agentmesh module, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench import s2_throughput, s8_overload
from bench.harness import ROOT, Cluster, Mesh, SchedulerCaller, sim_worker
from bench.load import closed_loop
from tests.support.postgres import PostgresServer

#: "function (path/to/file.py:123)" as py-spy writes a frame.
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

#: Parts of the code, by the first pattern their file matches.
PARTS = (
    ("agentmesh", re.compile(r"/agentmesh/(?P<name>[\w/]+)\.py$")),
    ("grpc", re.compile(r"grpc|_cython")),
    ("asyncio", re.compile(r"asyncio/")),
    ("protobuf", re.compile(r"google/protobuf")),
    ("opentelemetry", re.compile(r"opentelemetry")),
    ("prometheus", re.compile(r"prometheus_client")),
    ("sqlite", re.compile(r"sqlite3")),
    ("logging", re.compile(r"logging/")),
    ("threading", re.compile(r"/threading\.py$")),
    ("json", re.compile(r"/json/")),
    ("dataclasses", re.compile(r"/dataclasses\.py$")),
)


def part_of(path: str) -> str:
    """The part of the code a file belongs to (agentmesh modules by name)."""
    for name, pattern in PARTS:
        match = pattern.search(path)
        if match:
            return f"agentmesh.{match['name'].replace('/', '.')}" if name == "agentmesh" else name
    return "other"


def summarise(lines: Iterable[str], top: int = 25) -> tuple[int, list[str]]:
    """Samples in all, and a markdown summary of collapsed stacks ("a;b;c count")."""
    total = 0
    self_by_func: collections.Counter[str] = collections.Counter()
    incl_by_func: collections.Counter[str] = collections.Counter()
    self_by_part: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f.strip()]
        for frame in set(frames):
            incl_by_func[_label(frame)] += count
        if frames:
            leaf = frames[-1]
            self_by_func[_label(leaf)] += count
            match = FRAME.match(leaf.strip())
            self_by_part[part_of(match["file"] if match else leaf)] += count

    def table(title: str, counter: collections.Counter[str]) -> list[str]:
        rows = [f"| {title} | share |", "|---|---|"]
        rows += [f"| `{k}` | {v / total:.1%} |" for k, v in counter.most_common(top)]
        return rows

    if not total:
        return 0, ["no samples"]
    return total, [
        *table("part (self time)", self_by_part),
        "",
        *table("function (self time)", self_by_func),
        "",
        *table("function (inclusive)", incl_by_func),
    ]


def _label(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({'/'.join(match['file'].split('/')[-2:])})"


#: The loads: S2's requests of seven independent steps, or S8's chains of five.
LOADS = {
    "s2": (s2_throughput.plan, s2_throughput.DATA),
    "chain": (s8_overload.plan, s8_overload.DATA),
}


async def _load(mesh: Mesh, seconds: float, concurrency: int, load: str) -> int:
    caller = SchedulerCaller(mesh.target)
    make_plan, data = LOADS[load]
    plan = make_plan()

    async def call() -> int:
        await caller.submit(plan, data, timeout=30.0)
        return 1

    try:
        samples = await closed_loop(call, concurrency, seconds)
    finally:
        await caller.close()
    return sum(1 for s in samples if s.ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds sampled")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    parser.add_argument("--plan", choices=sorted(LOADS), default="s2", help="the requests sent")
    parser.add_argument("--offload", default="off", help="the scheduler's AGENTMESH_OFFLOAD")
    parser.add_argument(
        "--store", choices=("sqlite", "postgresql"), default="sqlite", help="the request store"
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.out.mkdir(parents=True, exist_ok=True)
    params = s2_throughput.FULL
    logs = Path(tempfile.mkdtemp(prefix="agentmesh-profile-"))
    env = {"AGENTMESH_OFFLOAD": args.offload}
    workers = [
        sim_worker(f"echo-{i}", latency=0.0, seed=i, capacity=params.capacity) for i in (1, 2)
    ]
    postgres = PostgresServer(s2_throughput.POSTGRES_SETTINGS)
    try:
        if args.store == "postgresql":
            postgres.start()
            env["AGENTMESH_STORE"] = postgres.url(postgres.create_database())
        mesh = Mesh("profile", logs, workers, env=env)
        report = [
            f"# Where the CPU goes: {args.plan} requests, offload {args.offload}, "
            f"{args.store} store",
            "",
        ]
        with Cluster([mesh]):
            asyncio.run(_load(mesh, args.warmup, params.concurrency, args.plan))
            targets = {"scheduler": mesh.scheduler_pid, "worker": mesh.processes["echo-1"].pid}
            spies = {
                name: subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--rate",
                        str(args.rate),
                        "--duration",
                        str(int(args.seconds)),
                        "--full-filenames",
                        "--output",
                        str(args.out / f"{name}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for name, pid in targets.items()
            }
            done = asyncio.run(_load(mesh, args.seconds + 1.0, params.concurrency, args.plan))
            for spy in spies.values():
                spy.wait(timeout=60)
    finally:
        postgres.close()
    report += [
        f"{done} requests of {len(LOADS[args.plan][0]().steps)} subtasks in "
        f"{args.seconds + 1:g} s; "
        f"py-spy at {args.rate} Hz for {args.seconds:g} s, idle frames excluded. "
        "Shares are of samples, not of CPU time: threads waiting for the GIL count too.",
        "",
    ]
    for name in targets:
        lines = (args.out / f"{name}.txt").read_text().splitlines()
        total, summary = summarise(lines)
        report += [f"## {name} ({total} samples)", "", *summary, ""]
    (args.out / "profile.md").write_text("\n".join(report))
    print(args.out / "profile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
