"""A private PostgreSQL 15 server for tests: one per test session, a fresh database per test.

The server's files live in a temporary directory (initdb), it listens on a
free port of 127.0.0.1 only, with its unix socket in that directory, and
password authentication (scram-sha-256) so that the URLs the tests use
carry a password, as real ones do. It is started and stopped by its pid.
initdb and postgres refuse to run as root: when the tests run as root (in
CI, in containers) the server runs as `nobody` (setpriv), and the
directory is given to that user.

Fixtures (registered suite-wide by tests/conftest.py): `postgres`, the
session's server, and `postgres_url`, the URL of a database made for the
test and dropped after it. The benchmarks start a `PostgresServer` too
(S2's PostgreSQL variant).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

#: Where Debian's postgresql-15 puts its binaries (they are on PATH too).
BIN = Path("/usr/lib/postgresql/15/bin")
USER = "agentmesh"
PASSWORD = "s3cret-test-password"
#: The tests kill schedulers, not this server: durability across its crash is not what
#: they check, and fsync costs the shared disk.
TEST_SETTINGS = {"fsync": "off"}


def _binary(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} (PostgreSQL 15) is missing: apt-get install postgresql-15")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(Exception):
    """Another process took the port between its choice and the server's start."""


class PostgresServer:
    """One postgres process on 127.0.0.1:`port`, its data in a temporary directory.

    `stop()` and `start()` may be called again (a restart keeps the port and the
    data); `close()` stops it and removes the directory.
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        #: Server settings (-c name=value); by default the tests' (fsync off).
        self.settings = TEST_SETTINGS if settings is None else settings
        # Not under pytest's tmp_path: its parents are private to root, and the server
        # may run as nobody.
        self.root = Path(tempfile.mkdtemp(prefix="agentmesh-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._started = False
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._as_user = [
                "setpriv",
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
            ]
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_user:
            os.chown(password_file, nobody.pw_uid, nobody.pw_gid)
        initdb = [
            _binary("initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]
        result = subprocess.run(
            [*self._as_user, *initdb], capture_output=True, text=True, cwd=self.root
        )
        password_file.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()}")
        self.log = self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """postgresql://agentmesh:PASSWORD@127.0.0.1:PORT/database."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it takes connections.

        The first start takes another free port if the one chosen was taken meanwhile (the
        port is free when chosen, not reserved); a restart keeps its port, which clients
        know.
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        for _ in range(3):
            try:
                self._start_once()
            except PortTaken:
                if self._started:
                    raise
                self.port = _free_port()
                continue
            self._started = True
            return
        raise AssertionError("PostgreSQL found no free port in three tries")

    def _start_once(self) -> None:
        postgres = [
            _binary("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.root}",
        ]
        for name, value in self.settings.items():
            postgres += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            # setpriv execs postgres: the pid is the server's own.
            self.process = subprocess.Popen(
                [*self._as_user, *postgres], stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        # A bounded poll (not tests.support.mesh's: the benchmarks use this module too).
        deadline = time.monotonic() + 30
        while not self._accepting():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for PostgreSQL to accept connections")
            time.sleep(0.05)

    def _accepting(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text()[-2000:]
            if "could not bind" in tail or "Address already in use" in tail:
                raise PortTaken(self.port)
            raise AssertionError(f"postgres exited: {tail}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (what `pg_ctl stop -m fast` sends): SIGINT to the server's pid;
        it ends every session and exits once its data is written."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database on the session's server, dropped after the test."""
    if postgres.process is None or postgres.process.poll() is not None:
        postgres.start()  # a test that stopped it and failed before starting it again
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)
