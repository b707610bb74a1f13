"""S1 overhead: what the scheduler adds to one call.

One echo worker (the `sim` backend over `echo`, latency 0) registered with
one scheduler. The same client makes one call at a time, alternating between
client → scheduler (Dispatch) → worker and client → worker (Execute)
directly, swapping which goes first in every pair. Both paths use blocking
gRPC stubs on one machine; the difference of their medians is the
scheduler's hop: a second RPC, queueing, the policy, bookkeeping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from agentmesh.client import Client
from agentmesh.v1 import worker_pb2_grpc
from bench.harness import Cluster, Mesh, execute_request, sim_worker
from bench.stats import ScenarioResult, Target, median, ms, percentile, ratio

CAPABILITY = "sentiment"
DATA = {"text": "The parcel arrived on time and the laptop works."}


@dataclass(frozen=True)
class Params:
    pairs: int = 3000
    """Calls on each path, alternating."""
    warmup: int = 300
    """Calls on each path before measuring (channels, caches, JIT-free but warm)."""
    rounds: int = 5
    """The pairs are split in rounds; each round's medians are kept, for spread."""


FULL = Params()
SMOKE = Params(pairs=40, warmup=10, rounds=2)


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    mesh = Mesh(
        "s1",
        log_dir,
        [sim_worker("echo-1", latency=0.0, seed=seed, capacity=8)],
    )
    with Cluster([mesh]):
        address = mesh.worker_addresses()["echo-1"]
        with Client(mesh.target, timeout=5.0) as client, grpc.insecure_channel(address) as ch:
            worker = worker_pb2_grpc.WorkerServiceStub(ch)

            def via_scheduler() -> float:
                t0 = time.perf_counter()
                client.dispatch(CAPABILITY, DATA, timeout=5.0)
                return time.perf_counter() - t0

            def direct() -> float:
                request = execute_request(CAPABILITY, DATA)
                t0 = time.perf_counter()
                worker.Execute(request, timeout=5.0)
                return time.perf_counter() - t0

            for _ in range(params.warmup):
                via_scheduler()
                direct()
            mesh_times: list[float] = []
            direct_times: list[float] = []
            round_medians: list[tuple[float, float]] = []
            per_round = max(1, params.pairs // params.rounds)
            for r in range(params.rounds):
                m_round: list[float] = []
                d_round: list[float] = []
                for i in range(per_round):
                    if (i + r) % 2:
                        m_round.append(via_scheduler())
                        d_round.append(direct())
                    else:
                        d_round.append(direct())
                        m_round.append(via_scheduler())
                mesh_times += m_round
                direct_times += d_round
                round_medians.append(
                    (percentile(m_round, 0.5) or 0.0, percentile(d_round, 0.5) or 0.0)
                )

    p50_mesh = percentile(mesh_times, 0.5)
    p50_direct = percentile(direct_times, 0.5)
    delta = None if p50_mesh is None or p50_direct is None else p50_mesh - p50_direct
    p50_ratio = ratio(p50_mesh, p50_direct)
    round_deltas = [ms(m - d) for m, d in round_medians]
    return ScenarioResult(
        key="S1",
        title="Overhead: client → scheduler → echo worker vs client → worker",
        metrics={
            "calls_per_path": len(mesh_times),
            "p50_via_scheduler_ms": ms(p50_mesh),
            "p50_direct_ms": ms(p50_direct),
            "p99_via_scheduler_ms": ms(percentile(mesh_times, 0.99)),
            "p99_direct_ms": ms(percentile(direct_times, 0.99)),
            "delta_p50_ms": ms(delta),
            "p50_ratio": p50_ratio,
            "delta_p50_ms_by_round": round_deltas,
            "delta_p50_ms_median_of_rounds": median(round_deltas),
        },
        targets={
            "delta_p50_ms": Target(ms(delta), 0.5, "<=", "ms"),
            "p50_ratio": Target(p50_ratio, 2.0, "<=", "×"),
        },
        notes=[
            "One call at a time, the two paths alternating call by call; blocking gRPC stubs.",
        ],
        latencies={"S1 one call at a time": {"direct": direct_times, "via scheduler": mesh_times}},
    )
