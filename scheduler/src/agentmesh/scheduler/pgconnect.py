"""PostgreSQL connections and migrations for the request store (pgstore.py).

`Connector` opens connections to one database with the store's settings
and turns the driver's errors into one line without the password;
`migrate` applies the numbered SQL files of `migrations/` under an advisory
lock, so that schedulers starting together do not race.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agentmesh.scheduler.store import StoreError

#: The key of the advisory lock that migrations hold ("agme"): one scheduler migrates
#: at a time, and the others wait for it, then find nothing left to apply.
MIGRATION_LOCK = 0x61676D65

#: Seconds a connection attempt may take. Reads happen on the event loop: a server
#: that does not answer must not hold it long.
CONNECT_TIMEOUT = 3

#: Connection settings, unless the URL sets them: a server gone without a word (a dead
#: host, a cut network) is noticed by TCP within about 10 s rather than the system's
#: default of minutes.
CONNECTION: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT,
    "application_name": "agentmesh-scheduler",
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


class StoreUnreachable(Exception):
    """The database could not be used; the message is one line, without the password."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of `migrations/`."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with the scheduler, in order."""
    found = []
    for file in resources.files("agentmesh.scheduler").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", file.name)
        if match:
            found.append(Migration(int(match[1]), match[2], file.read_text()))
    return sorted(found, key=lambda m: m.version)


def migrate(db: psycopg.Connection[Any], where: str) -> list[int]:
    """Apply the migrations `db` has not had, in one transaction; the versions applied.

    The advisory lock is taken before anything else, the version table's creation
    included: two schedulers starting on an empty database would otherwise both
    create it, and one would fail.
    """
    known = migrations()
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {v for (v,) in db.execute("SELECT version FROM schema_migrations")}
        newest = max((m.version for m in known), default=0)
        if applied and max(applied) > newest:
            raise StoreError(
                f"the request store {where} (AGENTMESH_STORE) has schema version "
                f"{max(applied)}, newer than this scheduler knows ({newest}): "
                "run a scheduler as new as the one that migrated it"
            )
        done = []
        for migration in known:
            if migration.version not in applied:
                db.execute(migration.sql.encode())  # no parameters: several statements may run
                db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                done.append(migration.version)
    return done


def redact(url: str) -> str:
    """The URL with its password (in the address or a password= parameter) as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, colon, _ = credentials.partition(":")
        netloc = f"{user}:***@{host}" if colon else netloc
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: str) -> str:
    parts = urlsplit(url)
    found = re.search(r"(?:^|&)password=([^&]*)", parts.query)
    return parts.password or (found[1] if found else "")


class Connector:
    """Opens connections to one database and turns its errors into one safe line."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        secret = _password(url)
        # As written in the URL and as libpq reads it (percent-decoded).
        self._secrets = sorted({secret, unquote(secret)} - {""}, key=len, reverse=True)

    def connect(self) -> psycopg.Connection[Any]:
        try:
            settings = {**CONNECTION, **conninfo_to_dict(self.url)}
            return psycopg.connect(autocommit=True, **settings)
        except psycopg.Error as error:
            raise StoreUnreachable(self.line(error)) from None

    def line(self, error: BaseException) -> str:
        """The error as one line that does not show the password."""
        text = " ".join(str(error).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300] + ("..." if len(text) > 300 else "")
