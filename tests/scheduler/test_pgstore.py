"""What only the PostgreSQL store has: migrations, connecting, and a server that restarts.

The contract both stores share is tested in test_store*.py, with each store.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from agentmesh.errors import Unavailable
from agentmesh.scheduler.pgstore import (
    CLEAR_SUBTASKS,
    Connector,
    PostgresSink,
    PostgresStore,
    StoreUnreachable,
    migrate,
    migrations,
    redact,
)
from agentmesh.scheduler.records import new_record
from agentmesh.scheduler.store import StoreError, open_store
from agentmesh.scheduler.storewriter import Statement
from tests.scheduler.test_store import PLAN
from tests.scheduler.test_store_health import Watch, until
from tests.support.postgres import PASSWORD, PostgresServer


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as db:
        return [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_migrations_are_applied_once_and_recorded(postgres_url: str) -> None:
    shipped = [m.version for m in migrations()]
    assert shipped and shipped == sorted(set(shipped)) and shipped[0] == 1
    PostgresStore(postgres_url).close()
    assert versions(postgres_url) == shipped
    with psycopg.connect(postgres_url, autocommit=True) as db:
        assert migrate(db, "") == []  # nothing left to apply
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    store.close()
    assert versions(postgres_url) == shipped


def test_schedulers_migrating_the_same_new_database_together_do_not_race(
    postgres_url: str,
) -> None:
    """Without the advisory lock, both create the version table and the tables, and one
    fails (a duplicate type, or a duplicate key in the version table)."""
    start = threading.Barrier(4)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with psycopg.connect(postgres_url, autocommit=True) as db:
                start.wait()
                applied.append(migrate(db, ""))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(applied, key=len) == [[], [], [], [m.version for m in migrations()]]
    assert versions(postgres_url) == [m.version for m in migrations()]


def test_a_database_migrated_by_a_newer_scheduler_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    with pytest.raises(StoreError) as refused:
        PostgresStore(postgres_url)
    message = str(refused.value)
    assert "version 999" in message and "AGENTMESH_STORE" in message
    assert PASSWORD not in message and "\n" not in message


def test_the_password_is_hidden_wherever_the_url_is_shown() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgres://u@h/db") == "postgres://u@h/db"
    assert redact("postgresql://h/db?sslmode=require&password=pw") == (
        "postgresql://h/db?sslmode=require&password=***"
    )


def test_an_error_shows_the_password_in_neither_form() -> None:
    connector = Connector("postgresql://u:p%40ss%2Fword@h/db")
    error = Exception('failed for "p@ss/word" and "p%40ss%2Fword"\nsecond line')
    assert connector.line(error) == 'failed for "***" and "***" second line'


@pytest.mark.parametrize("fault", ["wrong password", "nobody listening", "no such database"])
def test_a_database_that_cannot_be_used_at_start_is_one_line_without_the_password(
    postgres: PostgresServer, postgres_url: str, fault: str
) -> None:
    url = {
        "wrong password": postgres_url.replace(PASSWORD, "not-the-password"),
        "nobody listening": postgres_url.replace(f":{postgres.port}/", ":1/"),
        "no such database": postgres_url.rpartition("/")[0] + "/missing",
    }[fault]
    with pytest.raises(StoreError) as refused:
        PostgresStore(url)
    message = str(refused.value)
    print(f"\n{fault}: {message}")
    assert message.startswith("cannot connect to the request store postgresql://agentmesh:***@")
    assert "AGENTMESH_STORE" in message and "\n" not in message
    assert PASSWORD not in message and "not-the-password" not in message


async def test_a_server_restart_is_an_outage_the_store_rides_out(
    postgres: PostgresServer, postgres_url: str
) -> None:
    """Down while the server is stopped (noticed idle, and by a write), writes kept; up again
    and every write committed once it is back; reads made on a new connection."""
    watch = Watch()
    store = PostgresStore(postgres_url, observer=watch)
    store._writer._check_interval = 0.1  # notice the idle outage quickly
    store.save_request(new_record("before", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
    assert await store.committed(5)
    assert store.load("before") is not None
    try:
        await asyncio.to_thread(postgres.stop)
        await until(lambda: not store.up, "the store to notice the server gone")
        assert watch.states == [False]
        store.save_request(new_record("during", PLAN, {"text": "x"}, 0, 1.0), deadline=4e9)
        assert not await store.committed(0.3)
        with pytest.raises(Unavailable) as refused:
            store.load("before")
        assert refused.value.reason == "STORE_UNAVAILABLE" and PASSWORD not in str(refused.value)
        assert PASSWORD not in store.problem
    finally:
        await asyncio.to_thread(postgres.start)
    assert await store.committed(30)
    assert store.up and watch.states == [False, True]
    assert store.load("during") is not None
    assert sorted(s.record.request_id for s in store.unfinished()) == ["before", "during"]
    store.close()


def test_agentmesh_run_keeps_worker_files_in_a_directory_not_beside_a_url() -> None:
    from agentmesh.scheduler.config import SchedulerConfig
    from agentmesh.scheduler.run import worker_store

    config = SchedulerConfig(store="postgresql://u:pw@db:5432/mesh")
    assert worker_store(config, "w1") == ".agentmesh/worker-w1.db"
    assert worker_store(SchedulerConfig(store="/d/s.db"), "w1") == "/d/worker-w1.db"


class StuckConnection:
    """A connection as one lost in the middle of executemany's pipeline can be left: not
    marked closed or broken, yet every statement on it fails."""

    closed = broken = False

    def pipeline(self) -> None:
        raise psycopg.OperationalError("cannot exit pipeline mode while busy")

    execute = transaction = pipeline

    def close(self) -> None:
        pass


def test_a_failed_commit_is_retried_on_a_new_connection_even_one_not_marked_broken(
    postgres_url: str,
) -> None:
    connector = Connector(postgres_url)
    db = connector.connect()
    migrate(db, "")
    db.close()
    sink = PostgresSink(connector, StuckConnection(), replica="a")  # type: ignore[arg-type]
    batch: list[Statement] = [(CLEAR_SUBTASKS, ("r1", "r1", "replica", 1))]
    with pytest.raises(StoreUnreachable):
        sink.commit(batch)
    sink.commit(batch)  # on a connection made again
    sink.check()
    sink.close()


def test_settings_in_the_url_win_over_the_stores_defaults(postgres_url: str) -> None:
    store = PostgresStore(postgres_url + "?application_name=billing-mesh&connect_timeout=7")
    with psycopg.connect(postgres_url) as db:
        names = db.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    store.close()
    assert names == [("billing-mesh",), ("billing-mesh",)]  # the writer's and the reader's
    with Connector(postgres_url).connect() as db:
        assert db.info.get_parameters()["application_name"] == "agentmesh-scheduler"
