"""Fuzzing: malformed and adversarial requests to one live scheduler.

Hypothesis builds thousands of requests (random fields, huge strings, deep
and cyclic plans, raw enum values, odd metadata, tiny and negative deadlines,
non-finite numbers, undecodable bytes) and sends each through a real gRPC
stub. Every call must end with OK or a status its RPC documents, never
UNKNOWN or INTERNAL, within a per-call timeout; afterwards the scheduler
process is alive and still serves a good support ticket.

The runs are derandomized (no example database), so CI sees the same
examples every time. Non-finite numbers and undecodable bytes have tests of
their own rather than being mixed into every strategy, so that one failure
there does not stop the rest of the fuzzing from running.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentmesh import tls
from agentmesh.server.skills import SKILLS
from agentmesh.v1 import plan_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2
from tests.support.mesh import ROOT, Mesh, wait_for
from tests.support.tls import Certs

pytestmark = pytest.mark.integration

#: The scheduler's input limit in this mesh; gRPC refuses messages over 3x this.
MAX_INPUT_BYTES = 65_536
RECEIVE_LIMIT = 2 * MAX_INPUT_BYTES + (1 << 16)
#: Every call's client-side timeout, so that no call can hang the suite.
TIMEOUT = 10.0
WORKERS = {"w1", "w2"}

Code = grpc.StatusCode
#: What the scheduler documents, over all its RPCs (CANCELLED only when the client cancels).
DOCUMENTED = frozenset(
    {
        Code.OK,
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.UNAVAILABLE,
        Code.RESOURCE_EXHAUSTED,
        Code.DEADLINE_EXCEEDED,
        Code.FAILED_PRECONDITION,
        # A request id reused with other parameters (Submit, StreamSubmit, Dispatch).
        Code.ALREADY_EXISTS,
        # Register and Heartbeat of a worker the caller may not speak for, or at an
        # address not its own.
        Code.PERMISSION_DENIED,
    }
)

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))
TICKET = json.loads(TICKETS[0].read_text())

#: Calls made, by RPC and status, printed at the end of the module.
COUNTS: Counter[tuple[str, str]] = Counter()

BASE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def fuzz(examples: int) -> settings:
    """Settings for one fuzz test: this many examples, the same ones every run."""
    return settings(BASE, max_examples=examples)


@pytest.fixture(scope="module", params=["plaintext", "tls"])
def mesh(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Mesh]:
    """The mesh every test fuzzes, once in plaintext and once with mutual TLS (the fuzzing
    client then presents a client certificate: Register and Heartbeat are refused to it)."""
    certs = Certs(tmp_path_factory.mktemp("certs")) if request.param == "tls" else None
    mesh = Mesh(
        tmp_path_factory.mktemp("fuzz"),
        client_tls=certs.client().config() if certs else None,
        AGENTMESH_MAX_INPUT_BYTES=str(MAX_INPUT_BYTES),
        # Retries of a worker that cannot be reached end well inside TIMEOUT.
        AGENTMESH_RETRY_INITIAL_BACKOFF="0.05",
        # Register takes any address, so that the fuzzing reaches the dispatch to it.
        AGENTMESH_ALLOW_FOREIGN_ADDRESS="1",
        **(certs.scheduler().env if certs else {}),
    )
    try:
        mesh.start_scheduler()
        for name in sorted(WORKERS):
            mesh.start_worker(name, **(certs.worker(name).env if certs else {}))
        mesh.wait_workers(WORKERS)
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture(scope="module")
def channel(mesh: Mesh) -> Iterator[grpc.Channel]:
    with tls.channel(mesh.target, mesh.client_tls) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> scheduler_pb2_grpc.SchedulerServiceStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


# -- checking answers ---------------------------------------------------------------


def _show(request: Message | bytes) -> str:
    text = repr(request) if isinstance(request, bytes) else str(request)
    return text if len(text) < 1500 else f"{text[:1500]}... ({len(text)} characters)"


def check(
    rpc: str,
    code: Code,
    details: str | None,
    request: Message | bytes,
    allowed: frozenset[Code] = DOCUMENTED,
) -> Code:
    """Count the answer, and fail naming the request unless its status is documented."""
    COUNTS[rpc, code.name] += 1
    assert code in allowed, f"{rpc} answered {code.name} ({details!r}) to:\n{_show(request)}"
    return code


def unary(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    rpc: str,
    request: Message,
    *,
    timeout: float = TIMEOUT,
    metadata: Sequence[tuple[str, str | bytes]] = (),
) -> Code:
    """Make one unary call; its status, checked."""
    try:
        getattr(stub, rpc)(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    else:
        code, details = Code.OK, None
    # Checked outside the except block, so that a failure does not chain gRPC's
    # exception (whose origin varies) and Hypothesis sees one consistent failure.
    return check(rpc, code, details, request)


def streamed(
    call: Iterator[Message], cancel_after: int | None = None
) -> tuple[Code, str | None, list[Message], bool]:
    """Read a server stream to its end: status, details, messages, and whether we cancelled."""
    messages: list[Message] = []
    cancelled = False
    try:
        for message in call:
            messages.append(message)
            if cancel_after is not None and len(messages) > cancel_after:
                cancelled = call.cancel()  # type: ignore[attr-defined]
    except grpc.RpcError as error:
        return error.code(), error.details(), messages, cancelled
    return Code.OK, None, messages, cancelled


# -- strategies ---------------------------------------------------------------------

SKILL_NAMES = sorted(SKILLS)
#: Unicode text protobuf accepts (no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
RAW_INT32 = st.integers(-(2**31), 2**31 - 1)


def enum_values(valid: Sequence[int]) -> st.SearchStrategy[int]:
    """Valid values most often, else any int32 (proto3 enums are open)."""
    return st.one_of(st.sampled_from(valid), st.sampled_from([-3, -1, 5, 42, 99]), RAW_INT32)


PRIORITY = enum_values(plan_pb2.Priority.values())
DIFFICULTY = enum_values(plan_pb2.Difficulty.values())
OPERATOR = enum_values(plan_pb2.ConditionOperator.values())
TIER = enum_values(worker_pb2.Tier.values())
VIEW = enum_values(scheduler_pb2.RequestView.values())

HUGE_TEXT = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["x", "é", "😀", "Ab. ", "word ", "\n\n", "ORD-123456 "]),
    st.integers(min_value=1_000, max_value=60_000),
)
STRINGS = st.one_of(TEXT, st.sampled_from(["", " ", "\t\n", "null", "0", "ü" * 3]), HUGE_TEXT)


def json_values(numbers: st.SearchStrategy[float] = FINITE) -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), numbers, st.integers(-(2**60), 2**60), TEXT)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
        ),
        max_leaves=12,
    )


def ticket_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([json.loads(p.read_text())["text"] for p in TICKETS]),
        TEXT.filter(lambda t: t.strip() != ""),
        HUGE_TEXT,
    )


INPUTS = st.one_of(
    st.dictionaries(TEXT, json_values(), max_size=5),
    st.builds(
        lambda text, extra: {**extra, "text": text},
        st.one_of(ticket_text(), json_values()),
        st.dictionaries(TEXT, json_values(), max_size=3),
    ),
    st.builds(
        lambda key, size: {key: "y" * size},
        st.sampled_from(["text", "body"]),
        st.integers(MAX_INPUT_BYTES - 100, RECEIVE_LIMIT + 10_000),
    ),
)


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def value(data: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    if isinstance(data, dict):
        message.struct_value.update(data)
    elif isinstance(data, list):
        message.list_value.extend(data)
    elif data is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        message.bool_value = data
    elif isinstance(data, int | float):
        message.number_value = data
    else:
        message.string_value = data
    return message


REQUEST_IDS = st.one_of(
    st.just(""),
    st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
    st.sampled_from(["a" * 129, "no spaces", "../../etc/passwd", "ä", "x\x00y", "fuzz-1"]),
    TEXT,
)
WORKFLOWS = st.one_of(st.sampled_from(["support_ticket", "long_document", ""]), TEXT)
BUDGETS = st.one_of(
    st.just(0.0),
    st.floats(),
    st.sampled_from([-1.0, -0.0, 1e-300, 5e-324, 1e308, math.inf, -math.inf, math.nan]),
)
#: Client timeouts: mostly the normal one, sometimes below the scheduler's minimum or negative.
TIMEOUTS = st.one_of(
    st.just(TIMEOUT), st.floats(min_value=-5.0, max_value=0.2), st.sampled_from([0.0, 0.049])
)

METADATA_KEY = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,30}", fullmatch=True).filter(
    lambda k: not k.startswith("grpc-") and not k.endswith("-bin")
)
METADATA_VALUE = st.from_regex(r"[!-~]([ -~]{0,100}[!-~])?", fullmatch=True)
TRACEPARENTS = st.one_of(
    METADATA_VALUE,
    st.sampled_from(
        [
            "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
            "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "-",
            "00",
        ]
    ),
)
METADATA = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["traceparent", "tracestate", "baggage"]), TRACEPARENTS),
        st.tuples(METADATA_KEY, METADATA_VALUE),
        st.tuples(METADATA_KEY.map(lambda k: f"{k}-bin"), st.binary(max_size=64)),
        st.tuples(st.sampled_from(["x-big", "tracestate"]), st.just("v" * 20_000)),
    ),
    max_size=4,
)

STEP_IDS = st.one_of(
    st.sampled_from(["a", "b", "c", "step_1", "x" * 64, "x" * 65, "A", "1a", "", "a-b"]),
    TEXT,
)
CAPABILITIES = st.one_of(st.sampled_from(SKILL_NAMES), st.sampled_from(["", "teleport"]), TEXT)
REFERENCES = st.one_of(
    st.sampled_from(
        ["request", "request.text", "request.text.0", "steps.a", "steps.b.summary", "steps.", ""]
    ),
    st.builds(lambda i, f: f"steps.{i}.{f}", STEP_IDS, TEXT),
    st.from_regex(
        r"(request|steps\.[a-z][a-z0-9_]{0,8})(\.[A-Za-z0-9_-]{1,6}){0,3}", fullmatch=True
    ),
    TEXT,
)


def bindings(numbers: st.SearchStrategy[float] = FINITE) -> st.SearchStrategy[plan_pb2.Binding]:
    return st.builds(
        lambda refs, collect, literal: plan_pb2.Binding(
            refs=refs, collect=collect, value=None if literal is ... else value(literal)
        ),
        st.lists(REFERENCES, max_size=3),
        st.booleans(),
        st.one_of(st.just(...), json_values(numbers)),
    )


def conditions(numbers: st.SearchStrategy[float] = FINITE) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.builds(
            lambda ref, op, literal: plan_pb2.Condition(ref=ref, operator=op, value=value(literal)),
            REFERENCES,
            OPERATOR,
            json_values(numbers),
        ),
    )


def steps(numbers: st.SearchStrategy[float] = FINITE) -> st.SearchStrategy[plan_pb2.PlanStep]:
    return st.builds(
        lambda id, capability, inputs, deps, priority, difficulty, optional, when: (
            plan_pb2.PlanStep(
                id=id,
                capability=capability,
                inputs=inputs,
                depends_on=deps,
                priority=priority,
                difficulty=difficulty,
                optional=optional,
                when=when,
            )
        ),
        STEP_IDS,
        CAPABILITIES,
        st.dictionaries(TEXT, bindings(numbers), max_size=3),
        st.lists(STEP_IDS, max_size=3),
        PRIORITY,
        DIFFICULTY,
        st.booleans(),
        conditions(numbers),
    )


def random_plans(numbers: st.SearchStrategy[float] = FINITE) -> st.SearchStrategy[plan_pb2.Plan]:
    return st.builds(
        lambda workflow, plan_steps, answer: plan_pb2.Plan(
            workflow=workflow, steps=plan_steps, answer=answer
        ),
        st.one_of(st.just(""), WORKFLOWS),
        st.lists(steps(numbers), max_size=6),
        st.dictionaries(TEXT, bindings(numbers), max_size=3),
    )


def _chain_step(i: int, deps: Sequence[str], capability: str) -> plan_pb2.PlanStep:
    return plan_pb2.PlanStep(
        id=f"s{i}",
        capability=capability,
        depends_on=deps,
        inputs={"text": plan_pb2.Binding(refs=["request.text"])},
    )


@st.composite
def shaped_plans(draw: st.DrawFn) -> plan_pb2.Plan:
    """Deep chains, rings (cycles), wide fan-ins and self-loops, at and past the step limit."""
    n = draw(st.one_of(st.integers(1, 70), st.integers(60, 3_000)))
    shape = draw(st.sampled_from(["chain", "ring", "fan_in", "self_loop", "reverse_chain"]))
    capability = draw(st.sampled_from(["sentiment", "detect_language", "summarize", "translate"]))
    if shape == "chain":
        plan_steps = [_chain_step(i, [f"s{i - 1}"] if i else [], capability) for i in range(n)]
    elif shape == "reverse_chain":
        plan_steps = [
            _chain_step(i, [f"s{i + 1}"] if i < n - 1 else [], capability) for i in range(n)
        ]
    elif shape == "ring":
        plan_steps = [_chain_step(i, [f"s{(i - 1) % n}"], capability) for i in range(n)]
    elif shape == "fan_in":
        plan_steps = [_chain_step(i, [], capability) for i in range(n - 1)]
        plan_steps.append(_chain_step(n - 1, [f"s{i}" for i in range(n - 1)], capability))
    else:
        plan_steps = [_chain_step(i, [f"s{i}"], capability) for i in range(n)]
    answer = {"last": plan_pb2.Binding(refs=[f"steps.s{n - 1}"])}
    return plan_pb2.Plan(steps=plan_steps, answer=answer)


PLANS = st.one_of(random_plans(), shaped_plans())
GOALS = st.one_of(TEXT, HUGE_TEXT)


# -- the fuzzing --------------------------------------------------------------------


def set_source(
    request: Any, source: str | None, workflow: str, plan: plan_pb2.Plan, goal: str
) -> None:
    """Set the request's `source` oneof as drawn (None leaves it unset)."""
    if source == "workflow":
        request.workflow = workflow
    elif source == "plan":
        request.plan.CopyFrom(plan)
    elif source == "goal":
        request.goal = goal


@fuzz(250)
@given(
    request_id=REQUEST_IDS,
    source=st.sampled_from(["workflow", "plan", "goal", None]),
    workflow=WORKFLOWS,
    plan=PLANS,
    goal=GOALS,
    data=INPUTS,
    priority=PRIORITY,
    budget=BUDGETS,
    view=VIEW,
    timeout=TIMEOUTS,
    metadata=METADATA,
)
@example(  # the README's request, with every enum out of range
    request_id="",
    source="workflow",
    workflow="support_ticket",
    plan=plan_pb2.Plan(),
    goal="",
    data=TICKET,
    priority=99,
    budget=-1.0,
    view=7,
    timeout=TIMEOUT,
    metadata=[("traceparent", "garbage")],
)
def test_submit(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    request_id: str,
    source: str | None,
    workflow: str,
    plan: plan_pb2.Plan,
    goal: str,
    data: dict[str, Any],
    priority: int,
    budget: float,
    view: int,
    timeout: float,
    metadata: list[tuple[str, str | bytes]],
) -> None:
    request = scheduler_pb2.SubmitRequest(
        request_id=request_id,
        input=struct(data),
        priority=priority,
        cost_budget_usd=budget,
        view=view,
    )
    set_source(request, source, workflow, plan, goal)
    unary(stub, "Submit", request, timeout=timeout, metadata=metadata)


@fuzz(150)
@given(
    request_id=REQUEST_IDS,
    workflow=st.one_of(st.just("support_ticket"), WORKFLOWS),
    plan=st.one_of(st.none(), PLANS),
    data=INPUTS,
    priority=PRIORITY,
    budget=BUDGETS,
    view=VIEW,
    timeout=TIMEOUTS,
    metadata=METADATA,
    cancel_after=st.one_of(st.none(), st.integers(0, 4)),
)
def test_stream_submit(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    request_id: str,
    workflow: str,
    plan: plan_pb2.Plan | None,
    data: dict[str, Any],
    priority: int,
    budget: float,
    view: int,
    timeout: float,
    metadata: list[tuple[str, str | bytes]],
    cancel_after: int | None,
) -> None:
    """Events then the result, or a documented status; CANCELLED only after our cancel()."""
    request = scheduler_pb2.StreamSubmitRequest(
        request_id=request_id,
        input=struct(data),
        priority=priority,
        cost_budget_usd=budget,
        view=view,
    )
    if plan is None:
        request.workflow = workflow
    else:
        request.plan.CopyFrom(plan)
    call = stub.StreamSubmit(request, timeout=timeout, metadata=metadata)
    code, details, messages, cancelled = streamed(call, cancel_after)
    allowed = DOCUMENTED | {Code.CANCELLED} if cancelled else DOCUMENTED
    check("StreamSubmit", code, details, request, allowed)
    if code == Code.OK:
        assert messages and messages[-1].WhichOneof("event") == "result", messages[-1:]


@fuzz(250)
@given(
    source=st.sampled_from(["workflow", "plan", "goal", None]),
    workflow=WORKFLOWS,
    plan=PLANS,
    goal=GOALS,
    data=INPUTS,
    timeout=TIMEOUTS,
    metadata=METADATA,
)
def test_decompose(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    source: str | None,
    workflow: str,
    plan: plan_pb2.Plan,
    goal: str,
    data: dict[str, Any],
    timeout: float,
    metadata: list[tuple[str, str | bytes]],
) -> None:
    request = scheduler_pb2.DecomposeRequest(input=struct(data))
    set_source(request, source, workflow, plan, goal)
    unary(stub, "Decompose", request, timeout=timeout, metadata=metadata)


@fuzz(250)
@given(
    request_id=REQUEST_IDS,
    capability=CAPABILITIES,
    data=INPUTS,
    priority=PRIORITY,
    difficulty=DIFFICULTY,
    timeout=TIMEOUTS,
    metadata=METADATA,
)
def test_dispatch(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    request_id: str,
    capability: str,
    data: dict[str, Any],
    priority: int,
    difficulty: int,
    timeout: float,
    metadata: list[tuple[str, str | bytes]],
) -> None:
    request = scheduler_pb2.DispatchRequest(
        request_id=request_id,
        capability=capability,
        input=struct(data),
        priority=priority,
        difficulty=difficulty,
    )
    unary(stub, "Dispatch", request, timeout=timeout, metadata=metadata)


@fuzz(150)
@given(
    request_id=st.one_of(REQUEST_IDS, st.builds(lambda n: "r" * n, st.integers(100, 200_000))),
    view=VIEW,
    metadata=METADATA,
)
def test_get_request(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    request_id: str,
    view: int,
    metadata: list[tuple[str, str | bytes]],
) -> None:
    unary(
        stub,
        "GetRequest",
        scheduler_pb2.GetRequestRequest(request_id=request_id, view=view),
        metadata=metadata,
    )


#: Fake workers use their own ids and capabilities, so that they never take real work.
FAKE_IDS = st.one_of(
    st.just(""), st.from_regex(r"fuzz-[a-z0-9]{1,8}", fullmatch=True), TEXT.map(lambda t: f"fz{t}")
)
FAKE_CAPABILITIES = st.lists(st.one_of(st.just(""), TEXT.map(lambda t: f"fuzz_{t}")), max_size=4)
ADDRESSES = st.one_of(
    st.sampled_from(["", "127.0.0.1:1", "localhost:0", "[::1]:1", "unix:/nonexistent"]),
    TEXT,
)
HEALTH = st.builds(
    lambda in_flight, capacity, queue, seconds, nanos, error_rate, draining: (
        worker_pb2.WorkerHealth(
            in_flight=in_flight,
            capacity=capacity,
            queue_length=queue,
            latency_estimate=duration_pb2.Duration(seconds=seconds, nanos=nanos),
            error_rate=error_rate,
            draining=draining,
        )
    ),
    RAW_INT32,
    RAW_INT32,
    RAW_INT32,
    st.integers(-315_576_000_000, 315_576_000_000),
    RAW_INT32,
    st.floats(),
    st.booleans(),
)


def worker_infos() -> st.SearchStrategy[worker_pb2.WorkerInfo]:
    return st.builds(
        lambda worker_id, address, caps, capacity, tier, price_in, price_out, backend: (
            worker_pb2.WorkerInfo(
                worker_id=worker_id,
                address=address,
                capabilities=caps,
                capacity=capacity,
                tier=tier,
                input_price_per_mtok=price_in,
                output_price_per_mtok=price_out,
                backend=backend,
                model=backend,
            )
        ),
        FAKE_IDS,
        ADDRESSES,
        FAKE_CAPABILITIES,
        st.one_of(st.integers(-2, 8), RAW_INT32),
        TIER,
        st.floats(),
        st.floats(),
        TEXT,
    )


@fuzz(150)
@given(
    info=worker_infos(),
    beats=st.lists(st.tuples(st.one_of(st.none(), FAKE_IDS), HEALTH), max_size=4),
    metadata=METADATA,
)
def test_register_and_heartbeat(
    stub: scheduler_pb2_grpc.SchedulerServiceStub,
    info: worker_pb2.WorkerInfo,
    beats: list[tuple[str | None, worker_pb2.WorkerHealth]],
    metadata: list[tuple[str, str | bytes]],
) -> None:
    """A registration, then a heartbeat stream for that worker (or another) with random health."""
    request = scheduler_pb2.RegisterRequest(worker=info)
    unary(stub, "Register", request, metadata=metadata)
    stream = [
        scheduler_pb2.HeartbeatRequest(
            worker_id=info.worker_id if worker_id is None else worker_id, health=health
        )
        for worker_id, health in beats
    ]
    call = stub.Heartbeat(iter(stream), timeout=TIMEOUT, metadata=metadata)
    code, details, replies, _ = streamed(call)
    check("Heartbeat", code, details, request)
    if code == Code.OK:
        assert len(replies) == len(stream)


@fuzz(40)
@given(
    address=st.one_of(
        st.sampled_from(["127.0.0.1:1", "ipv4:999.1.1.1:0", "\x00", "dns:///", "[::1"]), TEXT
    ),
    capacity=st.integers(1, 4),
    tier=TIER,
)
def test_dispatch_to_a_worker_registered_at_a_bad_address(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, address: str, capacity: int, tier: int
) -> None:
    """Register accepts any address; a subtask routed there must still end documented."""
    capability = "fuzz_unreachable"
    info = worker_pb2.WorkerInfo(
        worker_id="fuzz-unreachable",
        address=address,
        capabilities=[capability],
        capacity=capacity,
        tier=tier,
    )
    if unary(stub, "Register", scheduler_pb2.RegisterRequest(worker=info)) != Code.OK:
        return
    request = scheduler_pb2.DispatchRequest(capability=capability, input=struct({"text": "x"}))
    try:
        stub.Dispatch(request, timeout=2.0)
    except grpc.RpcError as error:
        code, details = error.code(), error.details()
    else:
        code, details = Code.OK, None
    check("Dispatch", code, details, info)


# -- what the fuzzing found deserves a test of its own ------------------------------


def _nest(data: Any, depth: int, key: str) -> Any:
    for level in range(depth):
        data = {key: data} if level % 2 else [data]
    return data


NON_FINITE_PLACES = [
    "Submit input",
    "StreamSubmit input",
    "Decompose input",
    "Dispatch input",
    "Submit binding value",
    "Decompose binding value",
    "Submit condition value",
    "Submit answer value",
]


@pytest.mark.parametrize("where", NON_FINITE_PLACES)
@fuzz(15)
@given(number=NON_FINITE, depth=st.integers(0, 3), key=TEXT)
def test_non_finite_numbers(
    stub: scheduler_pb2_grpc.SchedulerServiceStub, number: float, depth: int, key: str, where: str
) -> None:
    """NaN and ±Infinity are valid in a Struct on the wire but not in JSON: refuse them, cleanly."""
    literal = _nest(number, depth, key)
    data = {"text": "My order ORD-123456 never arrived.", "extra": literal}
    step = plan_pb2.PlanStep(
        id="a", capability="sentiment", inputs={"text": plan_pb2.Binding(refs=["request.text"])}
    )
    rpc, _, place = where.partition(" ")
    if place == "input":
        request: Message = {
            "Submit": scheduler_pb2.SubmitRequest(workflow="support_ticket", input=struct(data)),
            "StreamSubmit": scheduler_pb2.StreamSubmitRequest(
                workflow="support_ticket", input=struct(data)
            ),
            "Decompose": scheduler_pb2.DecomposeRequest(
                workflow="support_ticket", input=struct(data)
            ),
            "Dispatch": scheduler_pb2.DispatchRequest(capability="sentiment", input=struct(data)),
        }[rpc]
    else:
        if place == "binding value":
            step.inputs["extra"].value.CopyFrom(value(literal))
        elif place == "condition value":
            step.when.CopyFrom(
                plan_pb2.Condition(ref="request.text", operator=1, value=value(literal))
            )
        plan = plan_pb2.Plan(steps=[step])
        if place == "answer value":
            plan.answer["x"].value.CopyFrom(value(literal))
        request = (
            scheduler_pb2.SubmitRequest(plan=plan, input=struct(TICKET))
            if rpc == "Submit"
            else scheduler_pb2.DecomposeRequest(plan=plan, input=struct(TICKET))
        )
    if rpc == "StreamSubmit":
        code, details, _, _ = streamed(stub.StreamSubmit(request, timeout=TIMEOUT))
        check(rpc, code, details, request)
    else:
        unary(stub, rpc, request)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand (Python's protobuf would refuse)."""
    return bytes([tag]) + _varint(len(payload)) + payload


def deeply_nested_submit(depth: int) -> bytes:
    """A SubmitRequest whose input nests lists `depth` deep: past the decoder's recursion limit."""
    nested = _field(0x1A, b"x")  # Value.string_value
    for _ in range(depth):
        nested = _field(0x32, _field(0x0A, nested))  # Value.list_value.values[0]
    text = _field(0x0A, b"text") + _field(0x12, _field(0x1A, b"hello there"))
    deep = _field(0x0A, b"deep") + _field(0x12, nested)
    return _field(0x12, b"support_ticket") + _field(0x22, _field(0x0A, text) + _field(0x0A, deep))


VALID_BYTES = [
    scheduler_pb2.SubmitRequest(
        workflow="support_ticket", input=struct(TICKET)
    ).SerializeToString(),
    scheduler_pb2.GetRequestRequest(request_id="abc").SerializeToString(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes overwritten."""
    data = bytearray(draw(st.sampled_from(VALID_BYTES)))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


UNARY_METHODS = ["Submit", "Decompose", "Dispatch", "GetRequest", "Register", "GetStats"]


@pytest.mark.parametrize("method", [*UNARY_METHODS, "StreamSubmit"])
@fuzz(30)
@given(
    payload=st.one_of(
        st.binary(max_size=256),
        mutated(),
        st.sampled_from([b"\x0a\x03\xff\xfe\xfd", b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\x0f"]),
    ),
)
@example(payload=deeply_nested_submit(60))
@example(payload=b"\x0a\x03\xff\xfe\xfd")  # field 1 (a string in every request) not UTF-8
def test_undecodable_messages(channel: grpc.Channel, method: str, payload: bytes) -> None:
    """Bytes that are not the request message are the client's fault: INVALID_ARGUMENT, or OK
    when they happen to decode; never UNKNOWN."""
    path = f"/agentmesh.v1.SchedulerService/{method}"
    if method == "StreamSubmit":
        code, details, _, _ = streamed(channel.unary_stream(path)(payload, timeout=TIMEOUT))
    else:
        try:
            channel.unary_unary(path)(payload, timeout=TIMEOUT)
        except grpc.RpcError as error:
            code, details = error.code(), error.details()
        else:
            code, details = Code.OK, None
    check(method, code, details, payload)


def test_an_oversized_plan_is_refused_promptly(
    mesh: Mesh, stub: scheduler_pb2_grpc.SchedulerServiceStub
) -> None:
    """A plan far over the step limit, in a message gRPC accepts, is refused without stalling
    the scheduler: checking it must not take time quadratic in its size."""
    count = 9_000
    plan = plan_pb2.Plan(
        steps=[plan_pb2.PlanStep(id=f"s{i}", capability="sentiment") for i in range(count)]
    )
    request = scheduler_pb2.DecomposeRequest(plan=plan, input=struct(TICKET))
    assert request.ByteSize() < RECEIVE_LIMIT
    # While the plan is checked, a cheap call on another thread must still be answered fast.
    stalls: list[float] = []

    def probe() -> None:
        time.sleep(0.1)
        started = time.monotonic()
        mesh.client.list_workers(timeout=TIMEOUT)
        stalls.append(time.monotonic() - started)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Decompose(request, timeout=60)
    took = time.monotonic() - started
    prober.join(TIMEOUT + 5)
    code, details = caught.value.code(), caught.value.details() or ""
    check("Decompose", code, details, request)
    assert code == Code.INVALID_ARGUMENT, details
    assert f"{count} steps is more than the limit" in details
    print(f"\n{count}-step plan refused in {took:.2f}s; ListWorkers meanwhile took {stalls}")
    assert took < 1.0, f"refusing a {count}-step plan took {took:.2f}s"
    assert stalls and stalls[0] < 0.5, f"ListWorkers waited {stalls}s behind the plan check"


# -- afterwards ---------------------------------------------------------------------


def test_scheduler_still_serves(mesh: Mesh) -> None:
    total = sum(COUNTS.values())
    by_rpc: Counter[str] = Counter()
    for (rpc, _), n in COUNTS.items():
        by_rpc[rpc] += n
    print(f"\nfuzzing made {total} calls:")
    for rpc in sorted(by_rpc):
        codes = ", ".join(f"{c} {n}" for (r, c), n in sorted(COUNTS.items()) if r == rpc)
        print(f"  {rpc:<12} {by_rpc[rpc]:>5}  ({codes})")
    COUNTS.clear()  # the next mesh (plaintext, then TLS) counts its own
    assert mesh.processes["scheduler"].poll() is None, "the scheduler process died"
    # The fake workers the fuzzing registered are evicted once their heartbeats stop.
    wait_for(lambda: mesh.worker_ids() == WORKERS, 30, "only the real workers to remain")
    for path in TICKETS[:3]:
        request = mesh.client.submit("support_ticket", json.loads(path.read_text()))
        assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
        assert request.answer["reply"]
    assert mesh.processes["scheduler"].poll() is None, "the scheduler process died"
