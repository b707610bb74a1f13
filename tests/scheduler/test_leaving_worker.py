"""A worker that said it was leaving answers what it has before it is let go."""

import asyncio

from agentmesh.scheduler.calls import ExecuteResult
from agentmesh.scheduler.registry import HealthReport, WorkerSpec
from tests.scheduler.test_dispatcher import call, make
from tests.support.fakes import FakeTransport


class Answering(FakeTransport):
    """w0 answers when told to; every other worker at once."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.answer = asyncio.Event()

    async def execute(self, worker, c, attempt, timeout):  # type: ignore[no-untyped-def]
        self.calls.append((worker.worker_id, c.subtask_id, attempt))
        if worker.worker_id == "w0":
            self.started.set()
            await self.answer.wait()
        return ExecuteResult({"by": worker.worker_id})


async def test_a_draining_worker_whose_stream_closes_keeps_its_answer() -> None:
    transport = Answering()
    dispatcher, clock = make(transport, workers=1)
    run = asyncio.create_task(dispatcher.run(call()))
    await transport.started.wait()
    dispatcher.registry.heartbeat("w0", HealthReport(draining=True), clock.now())
    spec = WorkerSpec("w1", "127.0.0.1:1", frozenset({"echo"}), 1)
    dispatcher.workers_changed(dispatcher.registry.register(spec, clock.now()))
    evicting = asyncio.create_task(dispatcher.evict("w0", "stream_closed"))
    await asyncio.sleep(0.05)
    assert not evicting.done() and dispatcher.registry.get("w0") is None
    transport.answer.set()  # its answer arrives after its stream closed
    outcome = await run
    await evicting
    assert (outcome.result.output, outcome.attempts) == ({"by": "w0"}, 1)
    assert transport.forgotten == ["w0"]


async def test_a_worker_that_did_not_say_it_was_leaving_is_let_go_at_once() -> None:
    transport = Answering()
    dispatcher, clock = make(transport, workers=1)
    run = asyncio.create_task(dispatcher.run(call()))
    await transport.started.wait()
    spec = WorkerSpec("w1", "127.0.0.1:1", frozenset({"echo"}), 1)
    dispatcher.workers_changed(dispatcher.registry.register(spec, clock.now()))
    await dispatcher.evict("w0", "stream_closed")
    outcome = await run
    assert (outcome.result.output, outcome.attempts) == ({"by": "w1"}, 2)
