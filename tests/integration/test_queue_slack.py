"""GetStats and /metrics report the least slack of a real backlog (scheduler and a sim worker)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentmesh.v1 import plan_pb2, scheduler_pb2
from tests.support.mesh import Mesh, wait_for

pytestmark = pytest.mark.integration

STEP_SECONDS = 0.5
DEADLINE = 60.0
CHAIN = 3
DATA = {"text": "Where is my order ORD-123456?"}


def chain_plan() -> plan_pb2.Plan:
    """Three summarize steps, each after the one before."""
    return plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id=f"s{i}",
                capability="summarize",
                inputs={"text": plan_pb2.Binding(refs=["request.text"])},
                depends_on=[f"s{i - 1}"] if i else [],
            )
            for i in range(CHAIN)
        ]
    )


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """One sim worker with a single slot taking exactly STEP_SECONDS a step."""
    mesh = Mesh(tmp_path_factory.mktemp("queue-slack"))
    try:
        mesh.start_scheduler()
        mesh.start_worker(
            "w1",
            backend="sim",
            AGENTMESH_SIM_INNER="echo",
            AGENTMESH_SIM_LATENCY=str(STEP_SECONDS),
            AGENTMESH_SIM_SIGMA="0",
            AGENTMESH_CAPACITY="1",
        )
        mesh.wait_workers({"w1"})
        yield mesh
    finally:
        mesh.stop()


def summarize_queue(mesh: Mesh) -> scheduler_pb2.QueueStats | None:
    for queue in mesh.client.get_stats(timeout=5).queues:
        if queue.capability == "summarize":
            return queue
    return None


def test_get_stats_reports_the_least_slack_of_a_backlog(mesh: Mesh) -> None:
    # One request first, so that the scheduler knows what a summarize step takes.
    warm = mesh.client.submit(chain_plan(), DATA, timeout=DEADLINE)
    assert warm.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED

    sends: list[float] = []

    def submit() -> scheduler_pb2.Request:
        sends.append(time.monotonic())
        return mesh.client.submit(chain_plan(), DATA, timeout=DEADLINE)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(submit) for _ in range(4)]

        def backlog() -> scheduler_pb2.QueueStats | None:
            queue = summarize_queue(mesh)
            return queue if queue is not None and queue.depth >= 2 else None

        wait_for(backlog, 30, "a backlog of summarize steps")
        # The least slack is that of a request sent between the first and the last send.
        before = time.monotonic() - max(sends)
        queue = summarize_queue(mesh)
        after = time.monotonic() - min(sends)
        assert queue is not None and queue.depth >= 1
        assert queue.HasField("least_slack")
        slack = queue.least_slack.ToNanoseconds() / 1e9
        # slack = time left − remaining path: the waiting first steps have two steps after
        # them, each estimated at about STEP_SECONDS (loose bounds: the clocks differ by the
        # time a call takes to reach the scheduler).
        path_at_least = DEADLINE - after - slack
        path_at_most = DEADLINE - before - slack
        print(
            f"\nleast slack {slack:.3f} s: remaining path {path_at_least:.3f}..{path_at_most:.3f} s"
        )
        assert path_at_most >= (CHAIN - 1) * STEP_SECONDS * 0.5
        assert path_at_least <= (CHAIN - 1) * STEP_SECONDS * 4

        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{mesh.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
        gauge = re.search(
            r'^agentmesh_queue_least_slack_seconds\{capability="summarize"\} (\S+)$',
            body,
            re.MULTILINE,
        )
        assert gauge is not None, body
        assert float(gauge.group(1)) <= slack + 1.0

        for future in futures:
            assert future.result(timeout=DEADLINE).state == scheduler_pb2.REQUEST_STATE_SUCCEEDED

    drained = summarize_queue(mesh)
    assert drained is not None and drained.depth == 0
    assert not drained.HasField("least_slack")
