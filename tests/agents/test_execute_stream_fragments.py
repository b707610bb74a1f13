"""Plan fragments on WorkerService.ExecuteStream: a real gRPC server on loopback, raw messages.

The worker core runs a recording backend with three skills of its own
(`split` a text into words, `shout` a word, `gather` what it is given),
behind the real servicer and the real `RejectUndecodable` interceptor; its
scheduler counts as alive. An input with `hold` waits for the test's gate,
so that a step is known to be running (or waiting) while the test acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc import aio
from prometheus_client import CollectorRegistry

from agentmesh.agents.backend import BackendResult
from agentmesh.agents.config import WorkerConfig
from agentmesh.agents.core import WorkerCore
from agentmesh.agents.echo import EchoBackend
from agentmesh.agents.runtime import Worker
from agentmesh.agents.servicer import WorkerServicer
from agentmesh.errors import Unavailable
from agentmesh.server.handlers import RejectUndecodable
from agentmesh.server.metrics import WorkerMetrics
from agentmesh.server.skills import Skill
from agentmesh.usage import Usage
from agentmesh.v1 import worker_pb2, worker_pb2_grpc
from agentmesh.wire import dict_to_struct, struct_to_dict
from tests.agents.test_execute_stream import collect, wait_until

Result = worker_pb2.ExecuteStreamResult
Code = grpc.StatusCode


def _skill(name: str, required: list[str], properties: dict[str, Any]) -> Skill:
    return Skill(
        name=name,
        description=f"{name} (a test skill)",
        input_schema={"type": "object", "properties": properties, "required": required},
        output_schema={"type": "object"},
        instructions="",
    )


SKILLS = {
    "split": _skill("split", ["text"], {"text": {"type": "string"}}),
    "shout": _skill("shout", ["word"], {"word": {"type": "string"}}),
    "gather": _skill("gather", [], {}),
}


@dataclass
class Recorder:
    """A backend that records every input it runs; `hold` waits for `gate`, `fail` fails."""

    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    name = "recorder"
    model = ""
    input_price_per_mtok = 0.0
    output_price_per_mtok = 0.0

    def capabilities(self) -> frozenset[str]:
        return frozenset(SKILLS)

    async def run(self, skill: Skill, data: Mapping[str, Any]) -> BackendResult:
        self.runs.append((skill.name, dict(data)))
        if data.get("hold"):
            await self.gate.wait()
        if data.get("fail"):
            raise Unavailable("the model is down")
        if skill.name == "split":
            words = str(data["text"]).split()
            output = {"words": words, "first": {"word": words[0]}, "count": len(words)}
        elif skill.name == "shout":
            output = {"word": str(data["word"]).upper()}
        else:
            output = {"input": dict(data)}
        return BackendResult(output, Usage(), "")

    def ran(self, capability: str) -> list[dict[str, Any]]:
        return [data for name, data in self.runs if name == capability]


@dataclass
class Served:
    core: WorkerCore
    servicer: WorkerServicer
    backend: Recorder
    stub: worker_pb2_grpc.WorkerServiceAsyncStub


async def _alive() -> bool:
    return True


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    backend = Recorder()
    core = WorkerCore(
        backend,
        worker_id="frag-1",
        catalogue=SKILLS,
        capacity=50,
        alive=_alive,
        metrics=WorkerMetrics(CollectorRegistry()),
    )
    servicer = WorkerServicer(core)
    server = aio.server(interceptors=[RejectUndecodable()])
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(core, servicer, backend, worker_pb2_grpc.WorkerServiceStub(channel))
    finally:
        backend.gate.set()
        await channel.close()
        await server.stop(0)


def ref(path: str) -> worker_pb2.WireSource:
    return worker_pb2.WireSource(ref=path)


def literal(value: Any) -> worker_pb2.WireSource:
    source = worker_pb2.WireSource()
    source.value.CopyFrom(dict_to_struct({"v": value}).fields["v"])
    return source


def step(
    stream_id: int,
    subtask_id: str,
    capability: str,
    data: dict[str, Any],
    *,
    after: list[str] | None = None,
    wiring: list[worker_pb2.WiredField] | None = None,
    request_id: str = "r1",
    timeout: float | None = None,
) -> worker_pb2.ExecuteStreamSubtask:
    item = worker_pb2.ExecuteStreamSubtask(
        id=stream_id,
        request=worker_pb2.ExecuteRequest(
            request_id=request_id,
            subtask_id=subtask_id,
            capability=capability,
            input=dict_to_struct(data),
            attempt=1,
        ),
        after=after or [],
        wiring=wiring or [],
    )
    if timeout is not None:
        item.timeout.FromNanoseconds(int(timeout * 1e9))
    return item


def output(result: Result) -> dict[str, Any]:
    assert result.WhichOneof("outcome") == "response", result
    return struct_to_dict(result.response.output, "output")


def reason(result: Result) -> str:
    """The ErrorInfo reason of a failed result."""
    assert result.WhichOneof("outcome") == "error", result
    for detail in result.error.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def code(result: Result) -> Code:
    assert result.WhichOneof("outcome") == "error", result
    return next(c for c in Code if c.value[0] == result.error.code)


def chain(base: int = 1, request_id: str = "r1") -> list[worker_pb2.ExecuteStreamSubtask]:
    """split -> shout -> gather, wired with every kind of source."""
    return [
        step(base, "split", "split", {"text": "alpha beta gamma"}, request_id=request_id),
        step(
            base + 1,
            "shout",
            "shout",
            {"word": "replaced", "keep": 1},
            request_id=request_id,
            after=["split"],
            wiring=[
                worker_pb2.WiredField(
                    field="word", sources=[ref("steps.split.nope"), ref("steps.split.words.1")]
                ),
                worker_pb2.WiredField(
                    field="tags",
                    collect=True,
                    sources=[ref("steps.split.words.0"), ref("steps.split.x"), literal("lit")],
                ),
                worker_pb2.WiredField(
                    field="mode",
                    sources=[ref("steps.split.words.9")],
                    default_value=struct_pb2.Value(string_value="loud"),
                ),
                worker_pb2.WiredField(field="absent", sources=[ref("steps.split.first.x")]),
                worker_pb2.WiredField(field="note", sources=[literal({"k": [1, 2]})]),
            ],
        ),
        step(
            base + 2,
            "gather",
            "gather",
            {},
            request_id=request_id,
            after=["shout", "split"],
            wiring=[
                worker_pb2.WiredField(field="shouted", sources=[ref("steps.shout.word")]),
                worker_pb2.WiredField(field="first", sources=[ref("steps.split.first.word")]),
                worker_pb2.WiredField(field="count", sources=[ref("steps.split.count")]),
            ],
        ),
    ]


SHOUT_INPUT = {
    "word": "beta",
    "keep": 1,
    "tags": ["alpha", "lit"],
    "mode": "loud",
    "note": {"k": [1, 2]},
}
GATHER_INPUT = {"shouted": "BETA", "first": "alpha", "count": 3}


async def test_a_chain_runs_each_step_with_its_wired_input(served: Served) -> None:
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=chain()))
    results, messages = await collect(call, 3)
    print(f"\n3 steps of a fragment answered in {messages} messages")
    assert output(results[1])["words"] == ["alpha", "beta", "gamma"]
    assert output(results[2]) == {"word": "BETA"}
    assert output(results[3]) == {"input": GATHER_INPUT}
    assert served.backend.ran("shout") == [SHOUT_INPUT]
    assert served.backend.ran("gather") == [GATHER_INPUT]
    call.cancel()


async def test_each_steps_result_leaves_as_soon_as_it_ends(served: Served) -> None:
    """The head's result is on the wire while the next step still runs: a finished step
    is never lost with a later one."""
    items = chain()
    items[1].request.input.update({"hold": True})
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    first, _ = await collect(call, 1)
    assert set(first) == {1}
    await wait_until(lambda: len(served.backend.ran("shout")) == 1, "the second step to run")
    assert served.backend.ran("gather") == []
    served.backend.gate.set()
    rest, _ = await collect(call, 2)
    assert set(rest) == {2, 3}
    assert output(rest[3]) == {"input": GATHER_INPUT}
    call.cancel()


async def test_steps_wait_only_for_steps_of_their_own_request(served: Served) -> None:
    """Two requests' fragments with the same subtask ids in one message, and a plain
    subtask beside them: each step is wired from its own request's steps."""
    items = [*chain(1, "r1"), *chain(11, "r2")]
    items[3].request.input.update({"text": "one two three"})
    items.append(step(21, "alone", "shout", {"word": "solo"}))
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    results, _ = await collect(call, 7)
    assert output(results[3]) == {"input": GATHER_INPUT}
    assert output(results[13]) == {"input": {"shouted": "TWO", "first": "one", "count": 3}}
    assert output(results[21]) == {"word": "SOLO"}
    call.cancel()


async def test_a_step_whose_wired_input_fails_the_schema_breaks_the_rest(
    served: Served,
) -> None:
    items = chain()
    del items[1].wiring[:]
    items[1].wiring.add(field="word", sources=[ref("steps.split.count")])  # a number
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    results, _ = await collect(call, 3)
    assert output(results[1])["count"] == 3
    assert code(results[2]) == Code.INVALID_ARGUMENT
    assert "word" in results[2].error.message
    assert code(results[3]) == Code.ABORTED and reason(results[3]) == "FRAGMENT_BROKEN"
    assert "'shout'" in results[3].error.message
    assert served.backend.ran("shout") == served.backend.ran("gather") == []
    call.cancel()


async def test_a_head_that_fails_aborts_every_step_after_it(served: Served) -> None:
    items = chain()
    items[0].request.input.update({"fail": True})
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    results, _ = await collect(call, 3)
    assert code(results[1]) == Code.UNAVAILABLE
    for stream_id in (2, 3):
        assert code(results[stream_id]) == Code.ABORTED
        assert reason(results[stream_id]) == "FRAGMENT_BROKEN"
    assert [name for name, _ in served.backend.runs] == ["split"]
    call.cancel()


async def test_steps_that_cannot_be_run_are_aborted_without_running(served: Served) -> None:
    """`after` naming a step not in the message, a step of another request, or a cycle."""
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(subtasks=[step(1, "split", "split", {"text": "a"})])
    )
    assert output((await collect(call, 1))[0][1])["count"] == 1
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                # "split" ran, but in an earlier message: not this fragment's.
                step(2, "late", "shout", {"word": "w"}, after=["split"]),
                step(3, "head", "split", {"text": "b c"}, request_id="r2"),
                step(4, "other", "shout", {"word": "w"}, after=["head"]),
                step(5, "x", "shout", {"word": "w"}, after=["y"]),
                step(6, "y", "shout", {"word": "w"}, after=["x"]),
                step(7, "z", "gather", {}, after=["y", "head"], request_id="r2"),
                step(8, "me", "gather", {}, after=["me"]),
            ]
        )
    )
    results, _ = await collect(call, 7)
    assert output(results[3])["count"] == 2
    for stream_id in (2, 4, 5, 6, 7, 8):
        assert code(results[stream_id]) == Code.ABORTED, stream_id
        assert reason(results[stream_id]) == "FRAGMENT_BROKEN"
    assert "not in the same message" in results[2].error.message
    assert "cycle" in results[5].error.message
    assert [name for name, _ in served.backend.runs] == ["split", "split"]
    call.cancel()


async def test_a_step_whose_wiring_is_invalid_is_handed_back(served: Served) -> None:
    """A reference to no step of `after`, or a literal JSON cannot hold: the fragment, not
    the request, is at fault, so ABORTED, for the scheduler to dispatch the step alone."""
    nan = worker_pb2.WiredField(field="word")
    nan.sources.add().value.number_value = float("nan")
    call = served.stub.ExecuteStream()
    await call.write(
        worker_pb2.ExecuteStreamRequest(
            subtasks=[
                step(1, "split", "split", {"text": "a"}),
                step(
                    2,
                    "shout",
                    "shout",
                    {},
                    after=["split"],
                    wiring=[worker_pb2.WiredField(field="word", sources=[ref("request.text")])],
                ),
                step(3, "nan", "shout", {}, after=["split"], wiring=[nan]),
            ]
        )
    )
    results, _ = await collect(call, 3)
    for stream_id in (2, 3):
        assert code(results[stream_id]) == Code.ABORTED
        assert reason(results[stream_id]) == "FRAGMENT_BROKEN"
    assert "wiring[0].sources[0].ref" in results[2].error.message
    assert "wiring[0].sources[0].value" in results[3].error.message
    assert served.backend.ran("shout") == []
    call.cancel()


async def test_cancelling_the_head_answers_the_steps_after_it(served: Served) -> None:
    items = chain()
    items[0].request.input.update({"hold": True})
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    await wait_until(lambda: len(served.backend.runs) == 1, "the head to run")
    await call.write(worker_pb2.ExecuteStreamRequest(cancel=[1]))
    results, _ = await collect(call, 3)
    assert code(results[1]) == Code.CANCELLED
    assert code(results[2]) == code(results[3]) == Code.ABORTED
    assert reason(results[3]) == "FRAGMENT_BROKEN"
    call.cancel()


async def test_a_waiting_step_can_be_cancelled_alone(served: Served) -> None:
    """A cancel of a step that waits answers it CANCELLED; the head runs on, and the step
    after the cancelled one is aborted."""
    items = chain()
    items[0].request.input.update({"hold": True})
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    await wait_until(lambda: len(served.backend.runs) == 1, "the head to run")
    await call.write(worker_pb2.ExecuteStreamRequest(cancel=[2]))
    results, _ = await collect(call, 2)
    assert code(results[2]) == Code.CANCELLED
    assert code(results[3]) == Code.ABORTED
    served.backend.gate.set()
    assert output((await collect(call, 1))[0][1])["count"] == 3
    assert served.backend.ran("shout") == []
    call.cancel()


async def test_the_streams_end_answers_waiting_steps(served: Served) -> None:
    items = chain()
    items[0].request.input.update({"hold": True})
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    await wait_until(lambda: len(served.backend.runs) == 1, "the head to run")
    assert not served.servicer._answered.is_set()
    call.cancel()
    await wait_until(served.servicer._answered.is_set, "nothing left to answer")
    assert [name for name, _ in served.backend.runs] == ["split"]


async def test_a_steps_timeout_counts_its_wait(served: Served) -> None:
    """The timeout runs from the message's arrival: a step whose head outlives it is
    answered DEADLINE_EXCEEDED without running, while the head runs on."""
    items = chain()
    items[0].request.input.update({"hold": True})
    items[1].timeout.FromNanoseconds(int(0.3e9))
    call = served.stub.ExecuteStream()
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=items))
    results, _ = await collect(call, 2)
    assert code(results[2]) == Code.DEADLINE_EXCEEDED
    assert "waiting for split" in results[2].error.message
    assert code(results[3]) == Code.ABORTED
    served.backend.gate.set()
    assert output((await collect(call, 1))[0][1])["count"] == 3
    assert served.backend.ran("shout") == []
    call.cancel()


async def test_a_repeated_fragment_replays_its_finished_steps(served: Served) -> None:
    call = served.stub.ExecuteStream()
    # The head alone first, then the whole fragment, then the fragment again.
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=chain()[:1]))
    head = (await collect(call, 1))[0][1]
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=chain(11)))
    first, _ = await collect(call, 3)
    assert first[11].response.replayed and first[11].response.output == head.response.output
    assert not first[12].response.replayed and not first[13].response.replayed
    assert output(first[13]) == {"input": GATHER_INPUT}  # wired from the replayed head
    await call.write(worker_pb2.ExecuteStreamRequest(subtasks=chain(21)))
    again, _ = await collect(call, 3)
    for i in range(3):
        assert again[21 + i].response.replayed
        assert again[21 + i].response.output == first[11 + i].response.output
    assert [name for name, _ in served.backend.runs] == ["split", "shout", "gather"]
    call.cancel()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_python_worker_declares_fragments_with_execute_stream(stream: bool) -> None:
    worker = Worker(WorkerConfig(execute_stream=stream), EchoBackend())
    info = worker.info()
    assert (info.execute_stream, info.fragments) == (stream, stream)
    env = {"AGENTMESH_EXECUTE_STREAM": "0"}
    assert not Worker(WorkerConfig.from_env(env), EchoBackend()).info().fragments
