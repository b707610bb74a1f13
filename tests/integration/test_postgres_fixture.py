"""The private PostgreSQL server of the tests (tests/support/postgres.py): it runs where the
tests run (as nobody under root), finds another port when its first is taken, and keeps
its port and data across a restart."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_the_server_takes_another_port_if_its_first_is_taken_and_keeps_it_after() -> None:
    server = PostgresServer()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            server.port = taken.getsockname()[1]
            server.start()
            assert server.port != taken.getsockname()[1]
        name = server.create_database()
        with psycopg.connect(server.url(name), autocommit=True) as db:
            db.execute("CREATE TABLE kept (x int)")
            owner = db.execute("SELECT current_setting('data_directory')").fetchone()
        assert owner is not None and str(server.data) == owner[0]
        if os.geteuid() == 0:
            assert os.stat(server.data).st_uid != 0  # initdb and postgres refuse root
        port, pid = server.port, server.pid
        server.stop()
        server.start()
        assert (server.port, server.pid != pid) == (port, True)
        with psycopg.connect(server.url(name)) as db:
            assert db.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        server.close()
    assert not server.root.exists()
