"""Several PostgresStores over one database: leases, takeover with the next epoch, fencing."""

from __future__ import annotations

import asyncio
import concurrent.futures

import psycopg

from agentmesh.scheduler.pgstore import PostgresStore
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.states import RequestState, SubtaskState
from tests.scheduler.test_store import PLAN
from tests.scheduler.test_store_health import until


def owners(url: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT request_id, owner, epoch FROM requests").fetchall()
    return {r: (o, e) for r, o, e in rows}


def expire(url: str, owner: str) -> None:
    """Let `owner`'s leases expire, as if the time had passed on the server's clock."""
    with psycopg.connect(url) as db:
        db.execute(
            "UPDATE requests SET lease_until = now() - interval '1 s' WHERE owner = %s", (owner,)
        )


async def test_a_request_taken_over_refuses_its_old_owners_writes(postgres_url: str) -> None:
    a = PostgresStore(postgres_url, replica="a", lease=0.3)
    b = PostgresStore(postgres_url, replica="b", lease=30)
    lost: list[str] = []
    a.watch(lost.append)
    record = new_record("r1", PLAN, {"text": "hi"}, 0, 1.0)
    a.save_request(record, deadline=4e9)
    assert await a.committed(5)
    assert owners(postgres_url) == {"r1": ("a", 1)}
    assert b.claim() == []  # a's lease holds

    expire(postgres_url, "a")
    [taken] = b.claim()
    assert taken.record.epoch == 2 and owners(postgres_url) == {"r1": ("b", 2)}
    assert b.claim() == []  # b's lease now

    # a comes back (a pause past its lease): its late result is refused, and it is told.
    late = record.subtasks["a"]
    late.state, late.output = SubtaskState.SUCCEEDED, {"summary": "late"}
    a.save_subtask("r1", late)
    assert await a.committed(5)
    await until(lambda: lost == ["r1"], "a to hear r1 is no longer its")
    record.state, record.answer = RequestState.SUCCEEDED, {"summary": "late"}
    a.finish_request(record)  # nothing queued: a holds r1 no longer
    assert await a.committed(5)
    stored = b.load("r1")
    assert stored is not None
    assert stored.record.state == RequestState.RUNNING
    assert stored.record.subtasks["a"].state == SubtaskState.PENDING

    # b, the owner, writes.
    mine = taken.record.subtasks["a"]
    mine.state, mine.output = SubtaskState.SUCCEEDED, {"summary": "b's"}
    b.save_subtask("r1", mine)
    taken.record.state, taken.record.answer = RequestState.SUCCEEDED, {"summary": "b's"}
    b.finish_request(taken.record)
    assert b.flush(5)
    final = a.load("r1")
    assert final is not None and final.record.answer == {"summary": "b's"}
    assert final.record.subtasks["a"].output == {"summary": "b's"}
    a.close()
    b.close()


async def test_the_same_new_id_on_two_replicas_is_one_request(postgres_url: str) -> None:
    a = PostgresStore(postgres_url, replica="a")
    b = PostgresStore(postgres_url, replica="b")
    lost: list[str] = []
    b.watch(lost.append)
    a.save_request(new_record("r1", PLAN, {"text": "a"}, 0, 1.0), deadline=4e9)
    assert await a.committed(5)
    b.save_request(new_record("r1", PLAN, {"text": "b"}, 0, 1.0), deadline=4e9)
    assert await b.committed(5)
    await until(lambda: lost == ["r1"], "b to hear r1 is a's")
    stored = b.load("r1")
    assert stored is not None and stored.record.input == {"text": "a"}
    assert owners(postgres_url) == {"r1": ("a", 1)}
    a.close()
    b.close()


def test_replicas_claiming_together_never_claim_the_same_request(postgres_url: str) -> None:
    first = PostgresStore(postgres_url, replica="gone")
    for i in range(60):
        first.save_request(new_record(f"r{i}", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    assert first.flush(10)
    first._writer.close()  # dies: no release, its leases expire
    survivors = [PostgresStore(postgres_url, replica=f"s{i}", lease=30) for i in range(3)]
    assert all(s.claim() == [] for s in survivors)  # not before the leases expire
    expire(postgres_url, "gone")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        claims = list(pool.map(lambda s: [c.record.request_id for c in s.claim(25)], survivors))
    claimed = [r for c in claims for r in c]
    assert len(claimed) == len(set(claimed)) == 60
    assert all(e == 2 for _, e in owners(postgres_url).values())
    for store in survivors:
        store.close()


def test_a_clean_stop_releases_its_requests_to_the_others_at_once(postgres_url: str) -> None:
    a = PostgresStore(postgres_url, replica="a", lease=60)
    b = PostgresStore(postgres_url, replica="b", lease=60)
    a.save_request(new_record("r1", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    a.close()
    assert [s.record.request_id for s in b.claim()] == ["r1"]
    b.close()


def test_renewal_moves_the_lease_forward(postgres_url: str) -> None:
    a = PostgresStore(postgres_url, replica="a")
    a.save_request(new_record("r1", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    assert a.flush(5)
    expire(postgres_url, "a")
    a.renew()
    assert a.flush(5)
    b = PostgresStore(postgres_url, replica="b")
    assert b.claim() == []
    a.close()
    b.close()


def test_the_loop_is_told_on_its_own_thread(postgres_url: str) -> None:
    async def run() -> str:
        a = PostgresStore(postgres_url, replica="a")
        told: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        a.watch(told.set_result)
        a.save_request(new_record("r1", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
        assert await a.committed(5)
        with psycopg.connect(postgres_url) as db:
            db.execute("UPDATE requests SET owner = 'z', epoch = 7")
        a.save_subtask("r1", new_record("r1", PLAN, {}, 0, 1.0).subtasks["a"])
        result = await asyncio.wait_for(told, 5)
        a.close()
        return result

    assert asyncio.run(run()) == "r1"
