"""The scheduler's ExecuteStream path with real processes: a scheduler and sim workers on
127.0.0.1, workers killed, restarted, drained, raced by hedges and timed out.

Workers serve ExecuteStream unless started with AGENTMESH_EXECUTE_STREAM=0, and the
scheduler then calls them with one unary Execute per subtask; the tests that matter for
both run on both.
"""

from __future__ import annotations

import contextlib
import signal
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import Mesh, completed_runs, wait_for

pytestmark = pytest.mark.integration

#: Every bounded wait, generous for a shared 2-core machine.
WAIT = 60.0
TEXT = {"text": "The parcel came late and the box was crushed."}
#: A subtask that takes 1.5 s on a sim worker started with it.
SLOW = {"AGENTMESH_SIM_LATENCY": "1.5", "AGENTMESH_SIM_SIGMA": "0"}
#: A subtask that outlasts every wait of the tests.
STUCK = {"AGENTMESH_SIM_LATENCY": "120", "AGENTMESH_SIM_SIGMA": "0"}
QUICK = {"AGENTMESH_SIM_LATENCY": "0.02", "AGENTMESH_SIM_SIGMA": "0"}
UNARY = {"AGENTMESH_EXECUTE_STREAM": "0"}
#: The worker's way to the scheduler's calls, as a test id.
WAYS = pytest.mark.parametrize("unary", [False, True], ids=["stream", "unary"])


@contextlib.contextmanager
def scheduler(tmp_path: Path, **env: str) -> Iterator[Mesh]:
    """A scheduler with `env` (round robin unless told: each worker gets work in turn)."""
    mesh = Mesh(tmp_path, heartbeat_interval=0.5, **{"AGENTMESH_POLICY": "round_robin", **env})
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, on a /metrics page."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def in_flight(port: int) -> float:
    return metric(port, "agentmesh_worker_in_flight")


def worker_codes(port: int, code: str) -> float:
    """Subtasks a worker ended with `code`, by its own count."""
    return metric(port, "agentmesh_worker_subtasks_total", code=code)


def dispatch_all(
    mesh: Mesh, count: int, prefix: str
) -> list[scheduler_pb2.DispatchResponse | AgentmeshError]:
    """`count` Dispatch calls at once, each answered or failed."""

    def one(i: int) -> scheduler_pb2.DispatchResponse | AgentmeshError:
        try:
            return mesh.client.dispatch("sentiment", TEXT, request_id=f"{prefix}-{i}", timeout=WAIT)
        except AgentmeshError as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def answered(
    outcomes: list[scheduler_pb2.DispatchResponse | AgentmeshError],
) -> list[scheduler_pb2.DispatchResponse]:
    failed = [o for o in outcomes if isinstance(o, AgentmeshError)]
    assert not failed, f"{len(failed)} request(s) failed: {failed[:3]}"
    return [o for o in outcomes if isinstance(o, scheduler_pb2.DispatchResponse)]


def test_stream_and_unary_workers_serve_side_by_side(tmp_path: Path) -> None:
    with scheduler(tmp_path) as mesh:
        for name, env in (("s1", {}), ("s2", {}), ("u1", UNARY)):
            mesh.start_worker(name, backend="sim", metrics=True, **QUICK, **env)
        mesh.wait_workers({"s1", "s2", "u1"})
        listed = {w.info.worker_id: w.info.execute_stream for w in mesh.client.list_workers()}
        assert listed == {"s1": True, "s2": True, "u1": False}

        answers = answered(dispatch_all(mesh, 24, "mixed"))
        by_worker = {name: sum(a.worker_id == name for a in answers) for name in listed}
        print(f"\n24 requests answered, by worker: {by_worker}")
        assert all(by_worker.values()), by_worker
        # Each worker ran exactly what it is credited with: nothing ran twice, none was lost.
        for name, credited in by_worker.items():
            assert completed_runs(mesh.worker_metrics_port(name))[0] == credited


def test_a_stream_worker_killed_with_subtasks_in_flight_loses_no_request(tmp_path: Path) -> None:
    count = 8
    with scheduler(tmp_path) as mesh:
        for name in ("victim", "survivor"):
            mesh.start_worker(name, backend="sim", metrics=True, **SLOW)
        mesh.wait_workers({"victim", "survivor"})
        victim_port = mesh.worker_metrics_port("victim")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(dispatch_all, mesh, count, "killed")
            wait_for(lambda: in_flight(victim_port) >= 2, WAIT, "subtasks on the victim")
            mesh.kill("victim")
            answers = answered(pending.result(WAIT * 2))
        moved = [a for a in answers if a.attempts >= 2]
        print(f"\n{count} requests answered, {len(moved)} moved off the killed worker")
        assert len(moved) >= 2
        # Each retried because its stream broke (or the worker left): UNAVAILABLE, at once.
        retries = {
            code: metric(mesh.metrics_port, "agentmesh_subtask_retries_total", code=code)
            for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        }
        assert retries == {"UNAVAILABLE": len(moved), "DEADLINE_EXCEEDED": 0}
        assert {a.worker_id for a in answers} == {"survivor"}
        survivor = completed_runs(mesh.worker_metrics_port("survivor"))[0]
        assert survivor == count


def test_a_hedges_loser_is_cancelled_on_its_stream_worker(tmp_path: Path) -> None:
    # Deadlines far past the waits below: only the scheduler's cancel stops the loser in time.
    far = {"AGENTMESH_ATTEMPT_TIMEOUT": "600", "AGENTMESH_HEDGE_BUDGET": "1"}
    with scheduler(tmp_path, AGENTMESH_HEDGE_AFTER="0.3", **far) as mesh:
        mesh.start_worker("slow", backend="sim", metrics=True, **STUCK)
        mesh.start_worker("fast", backend="sim", metrics=True, **QUICK)
        mesh.wait_workers({"slow", "fast"})
        slow_port = mesh.worker_metrics_port("slow")
        hedges = 0.0
        for i in range(6):  # round robin: the first attempt lands on "slow" within two
            answer = mesh.client.dispatch("sentiment", TEXT, request_id=f"hedge-{i}", timeout=600)
            assert answer.worker_id == "fast"
            hedges = metric(mesh.metrics_port, "agentmesh_subtask_hedges_total")
            if hedges:
                break
        assert hedges == 1
        # The loser's cancel reached the worker on the stream: its model call stopped.
        wait_for(lambda: worker_codes(slow_port, "CANCELLED") == 1, 30, "the loser to stop")
        assert in_flight(slow_port) == 0
        assert completed_runs(slow_port)[0] == 0
        listed = {w.info.worker_id: w.info.execute_stream for w in mesh.client.list_workers()}
        assert listed == {"slow": True, "fast": True}


@WAYS
def test_an_attempt_past_its_timeout_fails_deadline_exceeded_and_is_retried(
    tmp_path: Path, unary: bool
) -> None:
    way = UNARY if unary else {}
    with scheduler(tmp_path, AGENTMESH_ATTEMPT_TIMEOUT="1") as mesh:
        mesh.start_worker("slow", backend="sim", metrics=True, **STUCK, **way)
        mesh.wait_workers({"slow"})
        slow_port = mesh.worker_metrics_port("slow")
        # The request's own deadline, shorter than the attempt's, ends it.
        with pytest.raises(AgentmeshError) as raised:
            mesh.client.dispatch("sentiment", TEXT, request_id="short", timeout=0.5)
        assert raised.value.code_name == "DEADLINE_EXCEEDED"

        mesh.start_worker("fast", backend="sim", metrics=True, **QUICK, **way)
        mesh.wait_workers({"slow", "fast"})
        port = mesh.metrics_port

        def late() -> float:
            return metric(
                port,
                "agentmesh_subtask_attempt_duration_seconds_count",
                worker="slow",
                code="DEADLINE_EXCEEDED",
            )

        late_before = late()
        retried = None
        for i in range(6):  # round robin: an attempt lands on "slow" within two
            answer = mesh.client.dispatch("sentiment", TEXT, request_id=f"late-{i}", timeout=WAIT)
            assert answer.worker_id == "fast"
            if answer.attempts == 2:
                retried = answer
                break
        assert retried is not None, "no attempt went to the slow worker"
        assert metric(port, "agentmesh_subtask_retries_total", code="DEADLINE_EXCEEDED") == 1
        assert late() == late_before + 1
        # The worker stopped the timed-out attempts too, and ran none to the end.
        wait_for(lambda: in_flight(slow_port) == 0, WAIT, "the slow worker to stop its runs")
        assert completed_runs(slow_port)[0] == 0


def test_a_worker_restarted_on_a_new_port_under_its_id_gets_a_new_stream(
    tmp_path: Path,
) -> None:
    with scheduler(tmp_path) as mesh:
        mesh.start_worker("w", backend="sim", **QUICK)
        mesh.wait_workers({"w"})
        first = mesh.ports("w").grpc
        assert mesh.client.dispatch("sentiment", TEXT, request_id="before").attempts == 1
        mesh.kill("w")
        mesh.start_worker("w", backend="sim", **QUICK)
        second = mesh.ports("w").grpc
        assert second != first

        def listed_at_new_address() -> bool:
            return any(
                w.info.worker_id == "w" and w.info.address == second
                for w in mesh.client.list_workers(timeout=5)
            )

        wait_for(listed_at_new_address, WAIT, "the restarted worker to register")
        answer = mesh.client.dispatch("sentiment", TEXT, request_id="after", timeout=WAIT)
        assert (answer.worker_id, answer.attempts) == ("w", 1)


@WAYS
def test_sigterm_drains_a_worker_mid_subtask_without_losing_work(
    tmp_path: Path, unary: bool
) -> None:
    way = UNARY if unary else {}
    count = 6
    with scheduler(tmp_path) as mesh:
        for name in ("leaving", "staying"):
            mesh.start_worker(name, backend="sim", metrics=True, **SLOW, **way)
        mesh.wait_workers({"leaving", "staying"})
        leaving_port = mesh.worker_metrics_port("leaving")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(dispatch_all, mesh, count, "drain")
            # Every subtask started (both have room for all) before the SIGTERM: none is
            # sent to "leaving" afterwards, where it would be refused and retried.
            staying_port = mesh.worker_metrics_port("staying")
            wait_for(
                lambda: (
                    in_flight(leaving_port) >= 1
                    and in_flight(leaving_port) + in_flight(staying_port) == count
                ),
                WAIT,
                "every subtask to run, some on 'leaving'",
            )
            mesh.signal("leaving", signal.SIGTERM)
            answers = answered(pending.result(WAIT * 2))
        drained = sum(a.worker_id == "leaving" for a in answers)
        print(f"\n{count} requests answered, {drained} finished by the draining worker")
        # What "leaving" had started it finished and answered: no attempt was retried.
        assert drained >= 1
        assert all(a.attempts == 1 for a in answers), [a.attempts for a in answers]
        assert mesh.processes["leaving"].wait(WAIT) == 0
        wait_for(lambda: "leaving" not in mesh.worker_ids(), WAIT, "the drained worker to leave")
