"""Both request stores behind one fixture, for the tests of the store's contract.

`stores` is parametrized over "sqlite" (a file in tmp_path) and
"postgresql" (a fresh database on the session's private server): a test
that takes it runs once with each. It opens the test's store (again, after
a close: the same file or database), and knows how to make that store
refuse writes and how to count its rows, which each database does its own way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agentmesh.scheduler.pgstore import PostgresStore
from agentmesh.scheduler.store import SqliteStore
from agentmesh.scheduler.storewriter import StoreObserver

AnyStore = SqliteStore | PostgresStore


class Stores:
    """The test's store of one kind: opened, made read-only, its rows counted."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind = kind
        self.where = where
        #: What a store's `problem` says while it refuses writes.
        self.read_only_problem = "readonly" if kind == "sqlite" else "read-only transaction"
        self._opened: list[AnyStore] = []

    def open(self, observer: StoreObserver | None = None) -> AnyStore:
        """The store (the same file or database every time)."""
        store: AnyStore
        if self.kind == "sqlite":
            store = SqliteStore(self.where, observer=observer)
        else:
            store = PostgresStore(self.where, observer=observer)
        self._opened.append(store)
        return store

    def read_only(self, store: AnyStore, on: bool) -> None:
        """Make the database refuse the store's writes (or take them again).

        SQLite: query_only on the store's connection (root ignores file modes).
        PostgreSQL: the database's default_transaction_read_only, and its sessions
        ended, so that the store's connections are made again under the setting; the
        store must find its way back on its own.
        """
        if isinstance(store, SqliteStore):
            with store._lock:
                store._db.execute(f"PRAGMA query_only={'ON' if on else 'OFF'}")
            return
        server, _, name = self.where.rpartition("/")
        # From the maintenance database: a session in the read-only one could not undo it.
        with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
            setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
            db.execute(f'ALTER DATABASE "{name}" {setting}')
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def count(self, table: str) -> int:
        """Rows in one of the store's tables, read on a connection of the test's own."""
        query = f"SELECT count(*) FROM {table}"
        rows: list[Any]
        if self.kind == "sqlite":
            with sqlite3.connect(self.where) as db:
                rows = db.execute(query).fetchall()
            db.close()
        else:
            with psycopg.connect(self.where) as pg:
                rows = pg.execute(query).fetchall()
        return int(rows[0][0])

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The test's store, once SQLite and once PostgreSQL."""
    if request.param == "sqlite":
        where = str(tmp_path / "s.db")
    else:
        where = request.getfixturevalue("postgres_url")
    stores = Stores(request.param, where)
    try:
        yield stores
    finally:
        stores.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The scheduler's environment for a test that runs a mesh once with each store: none
    for SQLite (the Mesh's file), AGENTMESH_STORE=<a fresh database's URL> for PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"AGENTMESH_STORE": request.getfixturevalue("postgres_url")}
