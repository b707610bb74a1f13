"""Overload: a burst of thousands of Submit calls against a scheduler with small bounds.

Every call is answered within its deadline; each answer is OK (the request
ran to SUCCEEDED) or RESOURCE_EXHAUSTED with a RetryInfo delay (and the
refused request was never started); the scheduler's memory stays bounded
and its active requests drain back to zero.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc
from tests.support.mesh import ROOT, Mesh, wait_for

pytestmark = pytest.mark.integration

MAX_ACTIVE = 50
QUEUE_BOUND = 100
BURST = 2_500
#: Each call's deadline: long enough for an accepted request to wait its turn.
CALL_TIMEOUT = 60.0
#: RSS growth allowed over the burst, in bytes.
RSS_BOUND = 200 * 1024 * 1024

TICKETS = [
    json.loads(p.read_text()) for p in sorted((ROOT / "examples" / "tickets").glob("*.json"))
]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(
        tmp_path_factory.mktemp("overload"),
        AGENTMESH_MAX_ACTIVE_REQUESTS=str(MAX_ACTIVE),
        AGENTMESH_QUEUE_BOUND=str(QUEUE_BOUND),
    )
    try:
        mesh.start_scheduler()
        for name in ("s1", "s2"):
            mesh.start_worker(name, backend="sim", AGENTMESH_SIM_LATENCY="0.05")
        mesh.wait_workers({"s1", "s2"})
        yield mesh
    finally:
        mesh.stop()


def rss_bytes(pid: int) -> int:
    """The resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class RssSampler:
    """Samples a process's RSS on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Answers:
    accepted: dict[str, scheduler_pb2.Request] = field(default_factory=dict)
    refused: dict[str, float] = field(default_factory=dict)  # request id -> RetryInfo delay
    reasons: Counter[str] = field(default_factory=Counter)
    other: list[str] = field(default_factory=list)
    latest: float = 0.0


def retry_delay_and_reason(error: aio.AioRpcError) -> tuple[float | None, str]:
    """The RetryInfo delay (None when absent) and the ErrorInfo reason of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    delay, reason = None, ""
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.ToTimedelta().total_seconds()
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
            reason = error_info.reason
    return delay, reason


async def burst(target: str, count: int, in_flight: int | None = None) -> Answers:
    """Submit `count` tickets, each with its own request id, all at once or `in_flight` at a
    time; every answer, sorted."""
    answers = Answers()
    started = time.monotonic()
    limit = asyncio.Semaphore(in_flight or count)
    async with aio.insecure_channel(target) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

        async def one(i: int) -> None:
            request_id = f"overload-{in_flight or 'all'}-{i}"
            data = struct_pb2.Struct()
            data.update(TICKETS[i % len(TICKETS)])
            request = scheduler_pb2.SubmitRequest(
                request_id=request_id, workflow="support_ticket", input=data
            )
            async with limit:
                try:
                    response = await stub.Submit(request, timeout=CALL_TIMEOUT)
                except aio.AioRpcError as error:
                    code = error.code()
                    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        delay, reason = retry_delay_and_reason(error)
                        answers.reasons[reason] += 1
                        if delay is None:
                            answers.other.append(f"{request_id}: RESOURCE_EXHAUSTED, no RetryInfo")
                        else:
                            answers.refused[request_id] = delay
                    else:
                        answers.other.append(f"{request_id}: {code.name} {error.details()!r}")
                else:
                    answers.accepted[request_id] = response.request
            answers.latest = max(answers.latest, time.monotonic() - started)

        # The overall bound catches a call that never ends.
        await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(count))),
            timeout=CALL_TIMEOUT * count / (in_flight or count) + 30,
        )
    return answers


async def never_started(target: str, request_ids: list[str]) -> list[str]:
    """Of these refused ids, the ones the scheduler nevertheless knows (it should know none)."""
    known: list[str] = []
    async with aio.insecure_channel(target) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        limit = asyncio.Semaphore(200)

        async def one(request_id: str) -> None:
            async with limit:
                try:
                    await stub.GetRequest(
                        scheduler_pb2.GetRequestRequest(request_id=request_id), timeout=10
                    )
                except aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.NOT_FOUND:
                        return
                    known.append(f"{request_id}: GetRequest {error.code().name}")
                    return
                known.append(request_id)

        await asyncio.gather(*(one(r) for r in request_ids))
    return known


def overload(mesh: Mesh, in_flight: int | None) -> list[str]:
    """Run a burst of BURST calls; what went wrong, after printing what happened."""
    pid = mesh.processes["scheduler"].pid
    # Warm up, so that what is loaded once (skills, caches) is not counted as growth.
    for ticket in TICKETS[:3]:
        warm = mesh.client.submit("support_ticket", ticket, timeout=30)
        assert warm.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    before = rss_bytes(pid)

    started = time.monotonic()
    with RssSampler(pid) as sampler:
        answers = asyncio.run(burst(mesh.target, BURST, in_flight))
        took = time.monotonic() - started
        wait_for(
            lambda: mesh.client.get_stats(timeout=5).active_requests == 0,
            30,
            "active requests to drain to 0",
        )
    after = rss_bytes(pid)
    mb = 1024 * 1024
    other = Counter(line.partition(": ")[2] for line in answers.other)
    print(
        f"\n{BURST} Submit calls, {in_flight or 'all'} in flight, answered in {took:.1f}s "
        f"(slowest {answers.latest:.1f}s): accepted {len(answers.accepted)}, "
        f"refused {len(answers.refused)} {dict(answers.reasons)}, other {dict(other)}; "
        f"scheduler RSS before {before / mb:.1f} MB, peak {sampler.peak / mb:.1f} MB, "
        f"after {after / mb:.1f} MB"
    )

    problems: list[str] = []
    if answers.other:
        problems.append(
            f"{len(answers.other)} answers neither OK nor RESOURCE_EXHAUSTED with RetryInfo: "
            f"{dict(other)}, such as {answers.other[:3]}"
        )
    if len(answers.accepted) + len(answers.refused) + len(answers.other) != BURST:
        problems.append("not every call was answered")
    if not answers.accepted:
        problems.append("the scheduler accepted nothing")
    if not answers.refused:
        problems.append(f"{BURST} calls never reached the admission bound")
    not_succeeded = {
        request_id: scheduler_pb2.RequestState.Name(request.state)
        for request_id, request in answers.accepted.items()
        if request.state != scheduler_pb2.REQUEST_STATE_SUCCEEDED
    }
    if not_succeeded:
        problems.append(f"accepted but not SUCCEEDED: {not_succeeded}")
    if any(delay <= 0 for delay in answers.refused.values()):
        problems.append("a RetryInfo delay of 0")
    # Refused means never started: no half-run request behind a RESOURCE_EXHAUSTED.
    started_anyway = asyncio.run(never_started(mesh.target, sorted(answers.refused)))
    if started_anyway:
        problems.append(f"refused, yet known to GetRequest: {started_anyway[:10]}")
    if sampler.peak - before >= RSS_BOUND:
        problems.append(f"RSS grew by {(sampler.peak - before) / mb:.0f} MB")
    if mesh.processes["scheduler"].poll() is not None:
        problems.append("the scheduler process died")
    elif mesh.client.get_stats(timeout=5).active_requests != 0:
        problems.append("active requests did not stay at 0")
    return problems


def test_a_burst_all_at_once(mesh: Mesh) -> None:
    """Every call in flight at once: more than gRPC's own queue of pending calls holds."""
    problems = overload(mesh, in_flight=None)
    assert not problems, "\n".join(problems)


def test_a_burst_a_few_hundred_at_a_time(mesh: Mesh) -> None:
    problems = overload(mesh, in_flight=300)
    assert not problems, "\n".join(problems)
    # And it still serves at once.
    request = mesh.client.submit("support_ticket", TICKETS[0], timeout=30)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
