"""The scheduler's KEDA external scaler, called as KEDA calls it, while a real mesh builds
and drains a backlog.

The test plays KEDA with the client generated from KEDA's own externalscaler.proto:
StreamIsActive held open, IsActive, GetMetricSpec and GetMetrics polled, and the
replica count KEDA would ask for, max(minReplicaCount, ceil(metric / target)),
computed from them. One `sim` worker of two slots runs every subtask in exactly
400 ms; 40 are sent at once, a backlog of 8 s for it.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from agentmesh.keda import externalscaler_pb2 as pb
from agentmesh.keda import externalscaler_pb2_grpc as pb_grpc
from tests.integration.test_mesh import grpcurl
from tests.support.mesh import Mesh, refused, wait_for

CAPABILITY = "summarize"
LATENCY_MS = 400
BURST = 40
TARGET = 2.0  # targetSeconds: seconds of backlog one replica is for
#: The queue wait that counts as too long: scaling must have asked for more before it.
WAIT_THRESHOLD = TARGET
MIN_REPLICAS = 0

METADATA = {
    "scalerAddress": "",  # KEDA passes its own keys along; the scaler ignores them
    "capabilities": CAPABILITY,
    "tier": "builtin",
    "targetSeconds": str(TARGET),
}


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path)
    try:
        mesh.start_scheduler()
        mesh.start_worker(
            "w1",
            backend="sim",
            skills=CAPABILITY,
            args=("--capacity", "2"),
            AGENTMESH_SIM_SIGMA="0",
        )
        mesh.wait_workers({"w1"})
        yield mesh
    finally:
        mesh.stop()


def ref() -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(
        name="workers-builtin", namespace="agentmesh", scalerMetadata=METADATA
    )


def dispatch(mesh: Mesh, i: int) -> None:
    text = f"ticket {i}: the parcel arrived late and the box was damaged."
    mesh.client.dispatch(CAPABILITY, {"text": text, "sim_latency_ms": LATENCY_MS}, timeout=60)


def oldest_wait(mesh: Mesh) -> float:
    stats = mesh.client.get_stats(timeout=5)
    ages = [q.oldest_age.ToTimedelta().total_seconds() for q in stats.queues]
    return max(ages, default=0.0)


def test_keda_scales_the_pool_up_before_the_queue_is_late_and_back_to_its_minimum(
    mesh: Mesh,
) -> None:
    channel = grpc.insecure_channel(mesh.target)
    scaler = pb_grpc.ExternalScalerStub(channel)
    pushed: queue.Queue[bool] = queue.Queue()

    def listen() -> None:
        try:
            for answer in scaler.StreamIsActive(ref()):
                pushed.put(answer.result)
        except grpc.RpcError:
            pass  # the channel closed at the end of the test

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        spec = scaler.GetMetricSpec(ref(), timeout=5)
        (metric_spec,) = spec.metricSpecs
        assert metric_spec.targetSizeFloat == TARGET
        name = f"s0-{metric_spec.metricName}"  # KEDA prefixes the trigger's index

        def sample() -> tuple[float, int, float]:
            request = pb.GetMetricsRequest(scaledObjectRef=ref(), metricName=name)
            answer = scaler.GetMetrics(request, timeout=5)
            (value,) = answer.metricValues
            assert value.metricName == name
            metric = value.metricValueFloat
            replicas = max(MIN_REPLICAS, math.ceil(metric / metric_spec.targetSizeFloat))
            return metric, replicas, oldest_wait(mesh)

        # Idle: inactive, at the minimum, and the stream says so at once.
        assert pushed.get(timeout=10) is False
        assert scaler.IsActive(ref(), timeout=5).result is False
        assert sample()[:2] == (0.0, MIN_REPLICAS)

        # A few subtasks first, so that the scheduler knows the capability's latency.
        for i in range(4):
            dispatch(mesh, i)

        samples: list[tuple[float, float, int, float]] = []
        with ThreadPoolExecutor(BURST) as pool:
            sent = time.monotonic()
            futures = [pool.submit(dispatch, mesh, i) for i in range(BURST)]
            while not all(f.done() for f in futures):
                metric, replicas, wait = sample()
                samples.append((time.monotonic() - sent, metric, replicas, wait))
                time.sleep(0.1)
            for f in futures:
                f.result()
        assert pushed.get(timeout=10) is True  # pushed while the backlog built

        # Drained: back to the minimum, inactive, and the stream says so.
        wait_for(lambda: sample()[1] == MIN_REPLICAS, 15, "the replica count back at minimum")
        assert scaler.IsActive(ref(), timeout=5).result is False
        assert pushed.get(timeout=10) is False

        replicas_seen = [s[2] for s in samples]
        peak = max(replicas_seen)
        print(
            f"samples={len(samples)} peak replicas={peak} at metric "
            f"{max(s[1] for s in samples):.2f} s; "
            f"longest queue wait {max(s[3] for s in samples):.2f} s"
        )
        # One worker of two slots has 40 subtasks of 0.4 s: about 8 s of work, 4 targets.
        assert peak >= 4
        # The metric asked for more than one replica before anything had waited the threshold.
        first_up = next(s for s in samples if s[2] > 1)
        assert first_up[3] < WAIT_THRESHOLD, first_up
        # It followed the load down: from the peak, the count came down as the queue drained.
        after_peak = replicas_seen[replicas_seen.index(peak) :]
        assert after_peak[-1] < peak
    finally:
        channel.close()
        listener.join(5)


def test_metadata_naming_no_pool_is_invalid_argument_on_every_call(mesh: Mesh) -> None:
    bad = pb.ScaledObjectRef(name="x", scalerMetadata={"tier": "huge"})
    with grpc.insecure_channel(mesh.target) as channel:
        scaler = pb_grpc.ExternalScalerStub(channel)
        for call, request in [
            (scaler.IsActive, bad),
            (scaler.StreamIsActive, bad),
            (scaler.GetMetricSpec, bad),
            (scaler.GetMetrics, pb.GetMetricsRequest(scaledObjectRef=bad, metricName="m")),
        ]:
            code, _, violations = refused(call, request, timeout=5)
            assert code is grpc.StatusCode.INVALID_ARGUMENT
            assert list(violations) == ["scaledObjectRef.scalerMetadata.tier"]


def test_reflection_serves_the_scaler_for_grpcurl(mesh: Mesh) -> None:
    """An operator checks the scaler as KEDA will call it, with no .proto files."""
    listed = grpcurl(mesh.target, "list")
    assert "externalscaler.ExternalScaler" in listed.stdout.split(), listed.stdout
    body = json.dumps({"name": "pool", "scalerMetadata": {"tier": "builtin", "targetSeconds": "4"}})
    spec = grpcurl(mesh.target, "externalscaler.ExternalScaler/GetMetricSpec", data=body)
    assert spec.returncode == 0, spec.stderr
    (metric,) = json.loads(spec.stdout)["metricSpecs"]
    assert metric == {
        "metricName": "agentmesh-backlog-builtin-all",
        "targetSize": "4",
        "targetSizeFloat": 4,
    }
