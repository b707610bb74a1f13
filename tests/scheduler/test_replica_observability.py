"""What an operator sees of replicas and tenants: takeovers and fenced requests counted and
logged once each, and every log line about a request naming its tenant, so that two
tenants' requests of one id are told apart (in the JSON log format)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.errors import InvalidArgument
from agentmesh.scheduler.calls import NullObserver
from agentmesh.scheduler.core import Source
from agentmesh.scheduler.pgstore import PostgresStore
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.replicas import Replicas
from agentmesh.scheduler.states import SubtaskState
from agentmesh.scheduler.store import StoredRequest
from agentmesh.server import logs
from tests.scheduler.test_pgreplicas import expire
from tests.scheduler.test_request_ids import PLAN, Flaky, make_core
from tests.scheduler.test_store import PLAN as STORE_PLAN
from tests.scheduler.test_store_health import until
from tests.support.fakes import FakeClock

TENANTS = ("tenant-a", "tenant-b")
ID = "ticket-124"


Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    """The scheduler's log lines so far, as the JSON formatter writes them, parsed."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("agentmesh")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_requests_log_fields_name_its_tenant_only_where_it_has_one() -> None:
    assert logs.request_fields(ID, "acme") == {"request_id": ID, "tenant": "acme"}
    assert logs.request_fields(ID) == {"request_id": ID}


async def test_log_lines_written_while_a_request_runs_carry_its_tenant(
    tmp_path: Path, json_lines: Lines
) -> None:
    # Each request's second step is refused by the worker: a warning from within its work.
    core = make_core(tmp_path / "s.db", Flaky("sentiment", InvalidArgument("no")))
    for tenant in TENANTS:
        await core.submit(ID, Source(plan=PLAN), {"text": tenant}, tenant=tenant)
    await core.submit("no-tenant", Source(plan=PLAN), {"text": "x"})
    # GetStats' recent requests say whose each is.
    assert [(f.request_id, f.tenant) for f in core.stats.recent(3)] == [
        ("no-tenant", ""),
        (ID, "tenant-b"),
        (ID, "tenant-a"),
    ]
    lines = json_lines()
    finished = [line for line in lines if line["message"] == "request finished"]
    assert [(f["request_id"], f.get("tenant")) for f in finished] == [
        (ID, "tenant-a"),
        (ID, "tenant-b"),
        ("no-tenant", None),  # no tenant: no field, as before tenants
    ]
    # A line from within the request's work (an attempt's, in its step's task) too.
    failed = [line for line in lines if line["message"] == "subtask attempt failed"]
    assert [(f["request_id"], f.get("tenant"), f["subtask_id"]) for f in failed] == [
        (ID, "tenant-a", "second"),
        (ID, "tenant-b", "second"),
        ("no-tenant", None, "second"),
    ]


class Counting(NullObserver):
    def __init__(self) -> None:
        self.taken_over = 0
        self.released = 0
        self.fenced = 0

    def requests_taken_over(self, expired: int, released: int) -> None:
        self.taken_over += expired
        self.released += released

    def request_fenced(self) -> None:
        self.fenced += 1


class Runner:
    """RequestRunner's side of a takeover: what it resumed, what it lost (once)."""

    def __init__(self) -> None:
        self.resumed: list[str] = []
        self.lost: set[str] = set()

    def resume(self, stored: list[StoredRequest], delay: float = 0.0) -> int:
        self.resumed += [s.record.key for s in stored]
        return len(stored)

    def lose(self, key: str) -> bool:
        if key in self.lost:
            return False
        self.lost.add(key)
        return True


def replicas(store: PostgresStore, observer: Counting) -> Replicas:
    return Replicas(store, Runner(), FakeClock(), lease=store.lease.seconds, observer=observer)


async def test_a_takeover_and_the_loss_it_causes_are_counted_once_and_name_tenants(
    postgres_url: str, json_lines: Lines
) -> None:
    a = PostgresStore(postgres_url, replica="a", lease=30)
    b = PostgresStore(postgres_url, replica="b", lease=30)
    on_a, on_b = Counting(), Counting()
    ra, rb = replicas(a, on_a), replicas(b, on_b)
    a.watch(ra.lose)
    records = {t: new_record(ID, STORE_PLAN, {"text": t}, 0, 1.0, tenant=t) for t in TENANTS}
    for record in records.values():
        a.save_request(record, deadline=4e9)
    assert await a.committed(5)
    assert await rb.take_over() == 0 and on_b.taken_over == 0  # a's leases hold

    expire(postgres_url, "a")
    assert await rb.take_over() == 2
    assert (on_b.taken_over, on_b.released) == (2, 0)
    assert sorted(rb.runner.resumed) == [f"{t}/{ID}" for t in TENANTS]  # type: ignore[attr-defined]

    # a comes back past its lease: its late writes are refused, each request lost once
    # however many of its writes are refused (two batches here).
    for _ in range(2):
        for record in records.values():
            late = record.subtasks["a"]
            late.state, late.output = SubtaskState.SUCCEEDED, {"summary": "late"}
            # As RequestRunner does until it hears of the loss: its writes stay queued.
            a._epochs.setdefault(record.key, 1)
            a.save_subtask(record.key, late)
        assert await a.committed(5)
        await until(lambda: on_a.fenced == 2, "a to hear both requests are b's")
    assert on_a.fenced == 2 and on_b.fenced == 0
    a.close()
    b.close()

    took = [line for line in json_lines() if line["message"].startswith("taking over a request")]
    lost = [line for line in json_lines() if line["message"].startswith("request taken over")]
    for found in (took, lost):
        assert sorted((line["request_id"], line["tenant"]) for line in found) == [
            (ID, t) for t in TENANTS
        ]
    assert {line["replica"] for line in lost} == {"a"}
    assert {line["epoch"] for line in took} == {2}
    print(f"\ntakeover: taken over {on_b.taken_over}, fenced {on_a.fenced}, log lines {len(lost)}")


async def test_requests_a_replica_released_at_a_clean_stop_are_counted_apart(
    postgres_url: str, json_lines: Lines
) -> None:
    """A replica stopped cleanly releases its running requests: the one that takes them
    counts them as released (a restart's routine), not as expired (a replica unwell)."""
    a = PostgresStore(postgres_url, replica="a", lease=30)
    b = PostgresStore(postgres_url, replica="b", lease=30)
    on_b = Counting()
    rb = replicas(b, on_b)
    for t in TENANTS:
        a.save_request(new_record(ID, STORE_PLAN, {"text": t}, 0, 1.0, tenant=t), deadline=4e9)
    assert await a.committed(5)
    a.close()  # within its lease: released, not expired

    assert await rb.take_over() == 2
    assert (on_b.taken_over, on_b.released) == (0, 2)
    b.close()
    took = [line for line in json_lines() if line["message"].startswith("taking over a request")]
    assert [line["level"] for line in took] == ["info", "info"]


def test_a_request_is_lost_once_however_many_of_its_writes_are_refused(tmp_path: Path) -> None:
    """RequestRunner.lose says whether a loss is new: Replicas counts and logs only those."""
    core = make_core(tmp_path / "s.db", Flaky())
    assert core.runner.lose(f"tenant-a/{ID}") is True
    assert core.runner.lose(f"tenant-a/{ID}") is False  # a later batch's refused write
    assert core.runner.lose(f"tenant-b/{ID}") is True  # the other tenant's: another request
