"""WorkerService.ExecuteStream on a real gRPC server on loopback, called with a raw stub.

The worker core runs the real sim backend (echo outputs; a subtask's latency
comes from its input's `sim_latency_ms`) behind the real servicer and the
real `RejectUndecodable` interceptor. Its scheduler counts as alive, so a
cancelled subtask stops, as it does under a live scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.echo import EchoBackend
from agentmesh.agents.servicer import WorkerServicer
from agentmesh.agents.simulated import LATENCY_FIELD, SimulatedBackend, SimulatedProfile
from agentmesh.server.handlers import RejectUndecodable
from agentmesh.server.metrics import WorkerMetrics
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct

#: Every wait in these tests, generous for a shared 2-core machine.
WAIT = 30.0
STREAM = "/agentmesh.v1.WorkerService/ExecuteStream"
CANCELLED = grpc.StatusCode.CANCELLED.value[0]
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


async def _alive() -> bool:
    return True


@dataclass
class Served:
    """A worker core served on a loopback port, and a channel to it."""

    core: WorkerCore
    servicer: WorkerServicer
    channel: aio.Channel
    stub: worker_pb2_grpc.WorkerServiceAsyncStub

    def in_flight(self) -> float | None:
        """Subtasks running now (the worker's own gauge)."""
        return self.core.metrics.registry.get_sample_value("agentmesh_worker_in_flight")

    def count(self, code: str) -> float:
        """Subtasks that ended with `code` (the worker's own metric)."""
        return sum(
            sample.value
            for metric in self.core.metrics.registry.collect()
            for sample in metric.samples
            if sample.name == "agentmesh_worker_subtasks_total"
            and sample.labels.get("code") == code
        )


class Verbose:
    """A backend whose summaries are 100 kB: a few fill the stream's flow-control window."""

    name = "verbose"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def capabilities(self) -> frozenset[str]:
        return frozenset({"summarize"})

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        return BackendResult({"summary": "x" * 100_000}, Usage(), "")


async def serve(backend: Any, *options: tuple[str, Any]) -> AsyncIterator[Served]:
    core = WorkerCore(
        backend,
        worker_id="stream-1",
        capacity=200,
        alive=_alive,
        metrics=WorkerMetrics(CollectorRegistry()),
    )
    servicer = WorkerServicer(core)
    server = aio.server(interceptors=[RejectUndecodable()])
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    try:
        yield Served(core, servicer, channel, worker_pb2_grpc.WorkerServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for each in serve(
        SimulatedBackend(EchoBackend(), SimulatedProfile(latency=0.0, sigma=0.0))
    ):
        yield each


@pytest.fixture
async def verbose() -> AsyncIterator[Served]:
    # The client's window stays at HTTP/2's 64 kB (no probing to grow it) while it reads
    # nothing, and it takes messages of any size once it does.
    options = (("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", -1))
    async for each in serve(Verbose(), *options):
        yield each


def request(
    subtask_id: str,
    capability: str = "sentiment",
    request_id: str = "r1",
    **data: Any,
) -> worker_pb2.ExecuteRequest:
    return worker_pb2.ExecuteRequest(
        request_id=request_id,
        subtask_id=subtask_id,
        capability=capability,
        input=dict_to_struct({"text": "fine", **data}),
        attempt=1,
    )


def item(
    stream_id: int, execute: worker_pb2.ExecuteRequest, timeout: float | None = None
) -> worker_pb2.ExecuteStreamSubtask:
    subtask = worker_pb2.ExecuteStreamSubtask(id=stream_id, request=execute)
    if timeout is not None:
        subtask.timeout.FromNanoseconds(int(timeout * 1e9))
    return subtask


async def collect(call: Any, wanted: int) -> tuple[dict[int, worker_pb2.ExecuteStreamResult], int]:
    """Results by id until `wanted` came, and how many messages carried them."""
    results: dict[int, worker_pb2.ExecuteStreamResult] = {}
    messages = 0
    async with asyncio.timeout(WAIT):
        while len(results) < wanted:
            response = await call.read()
            assert response is not aio.EOF, f"the stream ended after {len(results)} results"
            messages += 1
            for result in response.results:
                assert result.id not in results, f"id {result.id} answered twice"
                results[result.id] = result
    return results, messages


async def wait_until(condition: Any, what: str) -> None:
    """Poll until condition() is truthy, for at most WAIT seconds."""
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {WAIT:.0f} s waiting for {what}")


async def test_subtasks_of_one_message_are_all_answered_in_batches(served: Served) -> None:
    """A burst of subtasks in one message: each answered once under its own id, and the
    results of subtasks finished together share messages."""
    count = 60
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[item(100 + i, request(f"s{i}", text=f"text {i}")) for i in range(count)]
        )
    )
    results, messages = await collect(call, count)
    assert set(results) == {100 + i for i in range(count)}
    for i in range(count):
        result = results[100 + i]
        assert result.WhichOneof("outcome") == "response", result
        assert not result.response.replayed
    print(f"\n{count} subtasks answered in {messages} messages")
    assert messages < count
    call.cancel()


async def test_a_refused_subtask_gets_executes_status_while_the_others_succeed(
    served: Served,
) -> None:
    """Missing ids, an unknown capability, a bad input and a mismatched repeat are each a
    per-subtask status with Execute's code, message and details; the stream goes on."""
    refused = {
        2: request("", request_id=""),
        3: request("bad-cap", capability="no_such_skill"),
        4: worker_pb2.ExecuteRequest(
            request_id="r1",
            subtask_id="bad-input",
            capability="sentiment",
            input=dict_to_struct({"text": 5}),
        ),
    }
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                item(1, request("ok-1")),
                *(item(i, r) for i, r in refused.items()),
                item(5, request("ok-2")),
            ]
        )
    )
    results, _ = await collect(call, 5)
    assert results[1].WhichOneof("outcome") == "response"
    assert results[5].WhichOneof("outcome") == "response"
    # The same ids with another input: refused as a mismatch, on the stream and by Execute.
    refused[6] = request("ok-1", text="other")
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=[item(6, refused[6])]))
    results |= (await collect(call, 1))[0]

    codes = set()
    for stream_id, execute in refused.items():
        streamed = results[stream_id]
        assert streamed.WhichOneof("outcome") == "error", streamed
        with pytest.raises(grpc.RpcError) as raised:
            await served.stub.Execute(execute, timeout=WAIT)
        error: Any = raised.value
        status = rpc_status.from_call(error)
        assert status is not None
        assert streamed.error.code == error.code().value[0]
        assert streamed.error.message == error.details()
        assert list(streamed.error.details) == list(status.details)
        codes.add(error.code().name)
    assert codes == {"INVALID_ARGUMENT", "UNIMPLEMENTED", "FAILED_PRECONDITION"}
    call.cancel()


async def test_a_repeated_subtask_is_replayed(served: Served) -> None:
    """The same (request_id, subtask_id) again, in a later message or in the same one, runs
    once: the repeat is answered with the first run's output, marked replayed."""
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=[item(1, request("once"))]))
    first = (await collect(call, 1))[0][1]
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                item(2, request("once")),
                item(3, request("twin", **{LATENCY_FIELD: 200})),
                item(4, request("twin", **{LATENCY_FIELD: 200})),
            ]
        )
    )
    results, _ = await collect(call, 3)
    assert results[2].response.replayed
    assert results[2].response.output == first.response.output
    assert sorted(results[i].response.replayed for i in (3, 4)) == [False, True]
    assert served.count("OK") == 2  # "once" and "twin" ran, once each
    call.cancel()


async def test_a_subtasks_timeout_ends_it_with_deadline_exceeded(served: Served) -> None:
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                item(1, request("slow", **{LATENCY_FIELD: 20_000}), timeout=0.3),
                item(2, request("quick"), timeout=WAIT),
            ]
        )
    )
    results, _ = await collect(call, 2)
    assert results[1].error.code == DEADLINE_EXCEEDED, results[1]
    assert "deadline" in results[1].error.message
    assert results[2].WhichOneof("outcome") == "response"
    call.cancel()


async def test_a_cancel_stops_a_running_subtask(served: Served) -> None:
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[item(7, request("long", **{LATENCY_FIELD: 60_000}))]
        )
    )
    await wait_until(lambda: served.in_flight() == 1, "the run")
    await call.write(worker_pb2.ExecuteStreamRequest(cancel=[7, 99]))  # 99: unknown, ignored
    results, _ = await collect(call, 1)
    assert results[7].error.code == CANCELLED, results[7]
    # The model call itself stopped (the scheduler is alive), not only the answer.
    await wait_until(lambda: served.count("CANCELLED") == 1, "the run to stop")
    assert served.in_flight() == 0
    # The stream goes on.
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=[item(8, request("after"))]))
    assert (await collect(call, 1))[0][8].WhichOneof("outcome") == "response"
    call.cancel()


async def test_a_cancel_in_the_message_that_starts_the_subtask(served: Served) -> None:
    """Cancels apply after starts: the subtask is stopped before it runs, and answered."""
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                item(1, request("stopped", **{LATENCY_FIELD: 60_000})),
                item(2, request("b")),
            ],
            cancel=[1],
        )
    )
    results, _ = await collect(call, 2)
    assert results[1].error.code == CANCELLED, results[1]
    assert results[2].WhichOneof("outcome") == "response"
    # Never started: a later repeat of the same ids runs it afresh rather than replaying.
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=[item(3, request("stopped"))]))
    again = (await collect(call, 1))[0][3]
    assert again.WhichOneof("outcome") == "response" and not again.response.replayed
    assert served.count("OK") == 2
    call.cancel()


async def test_an_undecodable_message_ends_the_stream_with_invalid_argument(
    served: Served,
) -> None:
    raw = served.channel.stream_stream(
        STREAM, response_deserializer=worker_pb2.ExecuteStreamResponse.FromString
    )
    call = raw()
    ok = worker_pb2.ExecuteStreamRequest(subtasks=[item(1, request("fine"))])
    await call.write(ok.SerializeToString())
    first = (await collect(call, 1))[0]
    assert first[1].WhichOneof("outcome") == "response"
    await call.write(b"\xff\xff\xff\xff")
    with pytest.raises(grpc.RpcError) as raised:
        async with asyncio.timeout(WAIT):
            while await call.read() is not aio.EOF:
                pass
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be decoded" in error.details()


async def test_ending_the_requests_ends_the_stream_after_the_last_results(
    served: Served,
) -> None:
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[item(i, request(f"e{i}", **{LATENCY_FIELD: 100 * i})) for i in (1, 2, 3)]
        )
    )
    await call.done_writing()
    results: dict[int, worker_pb2.ExecuteStreamResult] = {}
    async with asyncio.timeout(WAIT):
        while (response := await call.read()) is not aio.EOF:
            results |= {r.id: r for r in response.results}
        assert await call.code() == grpc.StatusCode.OK
    assert set(results) == {1, 2, 3}
    assert all(r.WhichOneof("outcome") == "response" for r in results.values())
    await asyncio.wait_for(served.servicer.answered(WAIT), WAIT)


async def test_a_stream_cancelled_by_the_scheduler_stops_its_subtasks(served: Served) -> None:
    """The stream's end is a cancel of each running subtask (a live scheduler: they stop)."""
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[item(i, request(f"c{i}", **{LATENCY_FIELD: 60_000})) for i in (1, 2)]
        )
    )
    await wait_until(lambda: served.in_flight() == 2, "both runs")
    call.cancel()
    await wait_until(lambda: served.count("CANCELLED") == 2, "both runs to stop")
    await wait_until(lambda: served.servicer._answered.is_set(), "the count of unanswered")


async def test_results_the_stream_could_not_deliver_leave_nothing_to_wait_for(
    verbose: Served,
) -> None:
    """A scheduler that stops reading, then ends the stream, while its results are being
    written: they can no longer be answered, so a drain must not wait for them."""
    count = 20  # 2 MB of results: far more than the flow-control window lets through unread
    call = verbose.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[item(i, request(f"v{i}", capability="summarize")) for i in range(count)]
        )
    )
    await wait_until(lambda: verbose.count("OK") == count, "every run to finish")
    assert not verbose.servicer._answered.is_set()  # unread: not answered yet
    call.cancel()
    await wait_until(verbose.servicer._answered.is_set, "nothing left to answer")
