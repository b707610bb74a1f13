"""The fence checked once per request and batch: what a batch applies and what it refuses.

Against the private PostgreSQL server: one batch of the writer mixes requests
this replica holds with one another replica took over, and new requests, one
of them an id another replica has; and the fence's lock keeps a takeover off
until the batch commits. Then `fence` alone, on the epochs a fence read.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from agentmesh.scheduler.pgconnect import Connector
from agentmesh.scheduler.pgreplicas import (
    CLAIM,
    CLEAR_SUBTASKS,
    FENCE,
    FINISH_REQUEST,
    RENEW,
    SAVE_REQUEST,
    SAVE_SUBTASK,
    Lease,
    fence,
    fenced_requests,
)
from agentmesh.scheduler.pgstore import PostgresSink, PostgresStore
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.states import RequestState, SubtaskState
from agentmesh.scheduler.storerows import outcome_row, request_row, subtask_row
from agentmesh.scheduler.storewriter import Statement
from tests.scheduler.test_pgreplicas import expire, owners
from tests.scheduler.test_store import PLAN


def subtask_records(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT request_id, subtask_id, record FROM subtasks").fetchall()
    return {(r, s): json.loads(record) for r, s, record in rows}


def states(url: str) -> dict[str, str]:
    with psycopg.connect(url) as db:
        return dict(db.execute("SELECT request_id, state FROM requests").fetchall())


def subtask(request_id: str, lease: Lease, epoch: int, output: str) -> Statement:
    record = new_record(request_id, PLAN, {}, 0, 1.0).subtasks["a"]
    record.state, record.output = SubtaskState.SUCCEEDED, {"summary": output}
    return SAVE_SUBTASK, lease.save_subtask(request_id, "a", subtask_row(record), epoch)


def finish(request_id: str, lease: Lease, epoch: int) -> Statement:
    record = new_record(request_id, PLAN, {"text": "x"}, 0, 1.0)
    record.state, record.answer = RequestState.SUCCEEDED, {"all": [f"{request_id}'s"]}
    return FINISH_REQUEST, lease.finish_request(outcome_row(record), epoch)


def new_request(request_id: str, lease: Lease, epoch: int = 1) -> list[Statement]:
    row = request_row(new_record(request_id, PLAN, {"text": "x"}, 0, 1.0), 4e9, "")
    return [
        (SAVE_REQUEST, lease.save_request(row, epoch)),
        (CLEAR_SUBTASKS, lease.clear_subtasks(request_id, epoch)),
    ]


def test_one_batch_applies_the_requests_it_holds_and_refuses_only_the_one_taken(
    postgres_url: str,
) -> None:
    a = PostgresStore(postgres_url, replica="a", lease=30)
    for request_id in ("r1", "r2", "r3"):
        a.save_request(new_record(request_id, PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    assert a.flush(5)
    b = PostgresStore(postgres_url, replica="b", lease=30)
    b.save_request(new_record("b1", PLAN, {"text": "b's"}, 0, 1.0), deadline=4e9)
    assert b.flush(5)
    with psycopg.connect(postgres_url) as db:  # r2's lease alone expires: b takes it
        db.execute(
            "UPDATE requests SET lease_until = now() - interval '1 s' WHERE request_id = 'r2'"
        )
    assert [s.record.request_id for s in b.claim()] == ["r2"]
    assert owners(postgres_url)["r2"] == ("b", 2)

    # a, paused through that, commits one batch: r1 and r3 are still its, r2 is not; r4
    # is new; b1 is b's.
    lease = Lease("a", 30)
    batch = [
        subtask("r1", lease, 1, "r1's"),
        subtask("r2", lease, 1, "late"),
        subtask("r3", lease, 1, "r3's"),
        *new_request("r4", lease),
        subtask("r4", lease, 1, "r4's"),
        *new_request("b1", lease),
        subtask("b1", lease, 1, "not b's"),
        finish("r3", lease, 1),
        finish("r2", lease, 1),
        (RENEW, lease.renew()),
    ]
    lost: list[set[str]] = []
    connector = Connector(postgres_url)
    sink = PostgresSink(connector, connector.connect(), replica="a")
    sink.lost = lost.append
    sink.commit(batch)
    sink.close()

    assert lost == [{"r2", "b1"}]
    records = subtask_records(postgres_url)
    assert {k: v["output"]["summary"] for k, v in records.items()} == {
        ("r1", "a"): "r1's",
        ("r3", "a"): "r3's",
        ("r4", "a"): "r4's",
    }
    assert owners(postgres_url) == {
        "r1": ("a", 1),
        "r2": ("b", 2),
        "r3": ("a", 1),
        "r4": ("a", 1),
        "b1": ("b", 1),
    }
    assert states(postgres_url) == {
        "r1": "RUNNING",
        "r2": "RUNNING",
        "r3": "SUCCEEDED",
        "r4": "RUNNING",
        "b1": "RUNNING",
    }
    stored = b.load("b1")
    assert stored is not None and stored.record.input == {"text": "b's"}
    a.close()
    b.close()


def test_a_takeover_passes_over_a_request_a_batch_has_fenced_until_it_commits(
    postgres_url: str,
) -> None:
    a = PostgresStore(postgres_url, replica="a", lease=30)
    a.save_request(new_record("r1", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    assert a.flush(5)
    expire(postgres_url, "a")
    claim = Lease("b", 30).claim(None, False)
    with psycopg.connect(postgres_url) as batch, psycopg.connect(postgres_url) as takeover:
        # a's batch, between its fence and its commit: r1 is held, its lease expired.
        assert batch.execute(FENCE, (["r1"], "a")).fetchall() == [("r1", 1)]
        assert takeover.execute(CLAIM, claim).fetchall() == []  # skipped while locked
        takeover.commit()
        batch.commit()
        # Claimed once the batch committed: its lease had expired (not been released).
        assert takeover.execute(CLAIM, claim).fetchall() == [("r1", False)]
        takeover.commit()
    assert owners(postgres_url) == {"r1": ("b", 2)}
    a.close()


def test_fence_keeps_held_writes_in_order_without_their_epoch() -> None:
    lease = Lease("a", 30)
    batch = [
        *new_request("r1", lease),
        subtask("r1", lease, 1, "one"),
        (RENEW, lease.renew()),
        subtask("r2", lease, 3, "two"),
        subtask("r3", lease, 1, "three"),
    ]
    assert fenced_requests(batch) == ["r1", "r2", "r3"]
    kept, lost = fence(batch, {"r1": 1, "r2": 3})
    assert lost == {"r3"}
    assert [(sql, parameters[0]) for sql, parameters in kept] == [
        (CLEAR_SUBTASKS, "r1"),
        (SAVE_SUBTASK, "r1"),
        (RENEW, lease.seconds),
        (SAVE_SUBTASK, "r2"),
    ]
    assert kept[0][1] == ("r1",) and len(kept[1][1]) == 3  # the epoch is not sent


def test_fence_drops_an_older_runs_writes_of_a_request_held_again_without_losing_it() -> None:
    lease = Lease("a", 30)
    batch = [
        subtask("r1", lease, 1, "first run"),
        *new_request("r1", lease, epoch=2),  # run again: its save runs before the fence
        subtask("r1", lease, 2, "second run"),
    ]
    kept, lost = fence(batch, {"r1": 2})
    assert lost == set()
    assert [sql for sql, _ in kept] == [CLEAR_SUBTASKS, SAVE_SUBTASK]
    assert json.loads(kept[1][1][2])["output"] == {"summary": "second run"}


def test_fence_counts_a_request_held_at_an_older_epoch_than_written_as_lost() -> None:
    lease = Lease("a", 30)
    kept, lost = fence([*new_request("r1", lease, epoch=3)], {"r1": 2})
    assert kept == [] and lost == {"r1"}
