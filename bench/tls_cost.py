"""TLS: what mutual TLS costs on S1's one call at a time and on S2's throughput.

Two meshes alike but for TLS, each a scheduler and two echo workers (`sim` over
`echo`, latency 0): one in plaintext on loopback, one with mutual TLS on every
connection (client → scheduler, scheduler → workers, workers → scheduler), on
certificates made for the run (`agentmesh.scheduler.certs`). S1's measure: one
Dispatch at a time, alternating between the meshes call by call; the difference of
the medians is what TLS adds to a call's two hops. S2's measure: the same
closed loop of 7-step plans as S2, rounds interleaved between the meshes; the
ratio of their throughputs, and the scheduler's CPU per subtask on each.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from agentmesh.client import Client
from agentmesh.scheduler.certs import write_mesh
from agentmesh.tls import TlsConfig
from bench import s1_overhead, s2_throughput
from bench.harness import Cluster, Mesh, SchedulerCaller, WorkerSpec, sim_worker
from bench.load import Call, closed_loop, rounds
from bench.stats import ScenarioResult, Target, median, ms, percentile, ratio

VARIANTS = ("plaintext", "tls")


def _files(folder: Path, stem: str) -> dict[str, str]:
    return {
        "AGENTMESH_TLS_CA": str(folder / "ca.pem"),
        "AGENTMESH_TLS_CERT": str(folder / f"{stem}.pem"),
        "AGENTMESH_TLS_KEY": str(folder / f"{stem}-key.pem"),
    }


def _meshes(log_dir: Path, certs: Path, seed: int, capacity: int) -> dict[str, Mesh]:
    write_mesh(certs, workers=2)
    meshes = {}
    for variant in VARIANTS:
        tls = variant == "tls"
        workers = []
        for i in (1, 2):
            spec = sim_worker(f"worker-{i}", latency=0.0, seed=seed + i, capacity=capacity)
            if tls:
                spec = WorkerSpec(spec.name, {**spec.env, **_files(certs, spec.name)})
            workers.append(spec)
        client = TlsConfig.from_env(_files(certs, "client")) if tls else None
        meshes[variant] = Mesh(
            f"tls-{variant}",
            log_dir,
            workers,
            env=_files(certs, "scheduler") if tls else {},
            client_tls=client,
        )
    return meshes


def _one_at_a_time(meshes: dict[str, Mesh], pairs: int, warmup: int) -> dict[str, list[float]]:
    """Dispatch latencies, one call at a time, the meshes alternating call by call."""
    clients = {v: Client(m.target, timeout=5.0, tls=m.client_tls) for v, m in meshes.items()}
    times: dict[str, list[float]] = {v: [] for v in meshes}
    try:

        def call(variant: str) -> float:
            t0 = time.perf_counter()
            clients[variant].dispatch(s1_overhead.CAPABILITY, s1_overhead.DATA, timeout=5.0)
            return time.perf_counter() - t0

        for _ in range(warmup):
            for variant in meshes:
                call(variant)
        for i in range(pairs):
            order = VARIANTS if i % 2 else VARIANTS[::-1]
            for variant in order:
                times[variant].append(call(variant))
    finally:
        for client in clients.values():
            client.close()
    return times


async def _throughput(
    meshes: dict[str, Mesh], params: s2_throughput.Params
) -> dict[str, list[s2_throughput.Round]]:
    callers = {v: SchedulerCaller(m.target, m.client_tls) for v, m in meshes.items()}
    the_plan = s2_throughput.plan()

    def call_for(variant: str) -> Call:
        async def call() -> int:
            await callers[variant].submit(the_plan, s2_throughput.DATA, timeout=30.0)
            return 1

        return call

    measured: dict[str, list[s2_throughput.Round]] = {v: [] for v in meshes}
    try:
        for variant in meshes:
            await closed_loop(call_for(variant), params.concurrency, params.warmup)
        for order in rounds(list(meshes), params.rounds):
            for variant in order:
                one = await s2_throughput.measure_round(meshes[variant], call_for(variant), params)
                measured[variant].append(one)
        return measured
    finally:
        for caller in callers.values():
            await caller.close()


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    s1 = s1_overhead.SMOKE if smoke else s1_overhead.FULL
    s2 = s2_throughput.SMOKE if smoke else s2_throughput.FULL
    with tempfile.TemporaryDirectory(prefix="agentmesh-bench-certs-") as certs:
        meshes = _meshes(log_dir, Path(certs), seed, s2.capacity)
        with Cluster(list(meshes.values())):
            latencies = _one_at_a_time(meshes, s1.pairs, s1.warmup)
            measured = asyncio.run(_throughput(meshes, s2))

    def stat(variant: str, key: str) -> float | None:
        return median(r[key] for r in measured[variant])

    p50 = {v: percentile(latencies[v], 0.5) for v in VARIANTS}
    delta = None if None in p50.values() else p50["tls"] - p50["plaintext"]  # type: ignore[operator]
    throughput = ratio(stat("tls", "subtasks_per_s"), stat("plaintext", "subtasks_per_s"))
    return ScenarioResult(
        key="TLS",
        title="TLS: mutual TLS on every connection vs plaintext, S1's call and S2's load",
        metrics={
            "s1_p50_plaintext_ms": ms(p50["plaintext"]),
            "s1_p50_tls_ms": ms(p50["tls"]),
            "s1_delta_p50_ms": ms(delta),
            "s1_calls_per_mesh": len(latencies["tls"]),
            "s2_subtasks_per_s_plaintext": stat("plaintext", "subtasks_per_s"),
            "s2_subtasks_per_s_tls": stat("tls", "subtasks_per_s"),
            "s2_tls_vs_plaintext_throughput": throughput,
            "s2_scheduler_cpu_us_per_subtask_plaintext": stat(
                "plaintext", "scheduler_cpu_us_per_subtask"
            ),
            "s2_scheduler_cpu_us_per_subtask_tls": stat("tls", "scheduler_cpu_us_per_subtask"),
            "s2_failed_requests": sum(int(r["failed"] or 0) for v in VARIANTS for r in measured[v]),
        },
        targets={
            "s1_delta_p50_ms": Target(ms(delta), 0.1, "<=", "ms"),
            "s2_tls_vs_plaintext_throughput": Target(throughput, 0.9, ">=", "×"),
        },
        notes=[
            "Both meshes on this machine at once; S1's calls alternate between them call by "
            "call, S2's rounds are interleaved; medians.",
            "Connections are kept open (as the mesh keeps them): the cost is per message "
            "(encryption), not the handshake.",
        ],
        latencies={"TLS one call at a time": dict(latencies)},
    )
