"""Several schedulers over one PostgreSQL database: leases, takeover and fencing, in SQL.

Each running request has an owner (a replica's id), an epoch and a lease
(`lease_until`, on the database server's clock, never a replica's). The
owner renews the leases of all its running requests in one statement, every
third of the lease, through its writer: a replica that cannot write cannot
renew, and its requests pass to others. A replica claims running requests
whose lease has expired in one statement that gives them a new owner and the
next epoch (`FOR UPDATE SKIP LOCKED`: survivors share the work without
claiming the same request twice), then resumes them as a restarted scheduler
does.

Fencing: every write of a running request is fenced by the owner and epoch
its writer holds it at, checked once per request and batch rather than per
row. The writer's transaction first applies the batch's new requests
(`SAVE_REQUEST`, which fences itself in its condition), then runs one
statement (`FENCE`) that reads and locks (`FOR SHARE`) the rows of the
requests the batch writes that this replica still owns, with their epochs;
then, in the same transaction, it sends the batch's other writes by key
(`FENCED`, set-based: runs of rows as one executemany), only those of
requests held at the epoch the write names. A request named by the batch
but not held at all has a newer owner (`fence` reports it lost): the
replica stops running it, and nothing it finishes afterwards is applied.
The lock, held until the commit, orders the batch with a takeover: the
takeover's claim skips the locked rows (`SKIP LOCKED`) until the batch
commits, then claims them and reads what it wrote; or it claimed them
first, and the fence finds the new owner and refuses the writes. Every
statement can still be applied twice with the same result (the writer may
commit a batch again when a connection is lost mid-commit).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentmesh.scheduler.storewriter import Statement

#: A new request (owner: this replica, epoch 1), or one run again (the epoch after the
#: one read): applied only over a finished row with an older epoch, or over its own
#: row (the same statement committed again, or its own request run again). It fences
#: itself, and runs before the batch's `FENCE`, which finds the request held if it applied.
SAVE_REQUEST = (
    "INSERT INTO requests (request_id, plan, input, priority, budget, deadline, state,"
    " created_at, fingerprint, tenant, owner, epoch, lease_until)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now() + %s * interval '1 second')"
    " ON CONFLICT (request_id) DO UPDATE SET plan = EXCLUDED.plan, input = EXCLUDED.input,"
    " priority = EXCLUDED.priority, budget = EXCLUDED.budget, deadline = EXCLUDED.deadline,"
    " state = EXCLUDED.state, answer = NULL, error = NULL, created_at = EXCLUDED.created_at,"
    " finished_at = NULL, fingerprint = EXCLUDED.fingerprint, tenant = EXCLUDED.tenant,"
    " owner = EXCLUDED.owner, epoch = EXCLUDED.epoch, lease_until = EXCLUDED.lease_until"
    " WHERE (requests.state <> 'RUNNING' AND requests.epoch < EXCLUDED.epoch)"
    " OR (requests.owner = EXCLUDED.owner AND requests.epoch <= EXCLUDED.epoch)"
)
#: Where the request's key and the epoch are in `SAVE_REQUEST`'s parameters.
SAVE_REQUEST_ID, SAVE_REQUEST_EPOCH = 0, 11
#: The fence of a batch: of the requests it writes (`%s`, their ids), those this replica
#: (`%s`) owns, with their epochs; each row locked until the batch commits.
FENCE = "SELECT request_id, epoch FROM requests WHERE request_id = ANY(%s) AND owner = %s FOR SHARE"
#: The writes the fence guards: by key, sent only for requests the fence found held.
CLEAR_SUBTASKS = "DELETE FROM subtasks WHERE request_id = %s"
SAVE_SUBTASK = (
    "INSERT INTO subtasks (request_id, subtask_id, record) VALUES (%s, %s, %s)"
    " ON CONFLICT (request_id, subtask_id) DO UPDATE SET record = EXCLUDED.record"
)
FINISH_REQUEST = (
    "UPDATE requests SET state = %s, answer = %s, error = %s, finished_at = %s"
    " WHERE request_id = %s"
)
#: Every running request of one replica: its lease from now.
RENEW = (
    "UPDATE requests SET lease_until = now() + %s * interval '1 second'"
    " WHERE owner = %s AND state = 'RUNNING'"
)
#: At a clean stop: this replica's running requests are left for the others (or its
#: successor) to take at once, rather than when their leases expire.
RELEASE = "UPDATE requests SET lease_until = NULL WHERE owner = %s AND state = 'RUNNING'"
#: Running requests whose lease has expired or was released (another replica's) or that
#: are this replica's own (`mine`: at start, for a replica that keeps its id across
#: restarts; NULL otherwise), at most `limit` (NULL: all), claimed with the next epoch;
#: their keys, and whether their owner had released them (`RELEASE`) rather than let
#: their lease expire.
CLAIM = (
    "WITH claimable AS (SELECT request_id, lease_until IS NULL AS released FROM requests"
    " WHERE state = 'RUNNING' AND"
    " ((owner <> %(me)s AND (lease_until IS NULL OR lease_until < now()))"
    " OR owner = %(mine)s) LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " UPDATE requests r SET owner = %(me)s, epoch = r.epoch + 1,"
    " lease_until = now() + %(lease)s * interval '1 second'"
    " FROM claimable c WHERE r.request_id = c.request_id"
    " RETURNING r.request_id, c.released"
)
#: This replica's backlog, for the whole mesh's (`MESH_BACKLOG`).
REPORT_BACKLOG = (
    "INSERT INTO replicas (replica, backlog, seen_at) VALUES (%s, %s, now())"
    " ON CONFLICT (replica) DO UPDATE SET backlog = EXCLUDED.backlog, seen_at = now()"
)
#: The backlogs of the replicas heard from within `%s` seconds.
MESH_BACKLOG = (
    "SELECT replica, backlog FROM replicas WHERE seen_at > now() - %s * interval '1 second'"
)

#: The fenced writes, and where the request's key (the request_id column) is in their
#: parameters. Their last parameter is the epoch the write holds the request at: checked
#: against the fence's, and not sent.
FENCED = {CLEAR_SUBTASKS: 0, SAVE_SUBTASK: 0, FINISH_REQUEST: 4}


def fenced_requests(statements: Iterable[Statement]) -> list[str]:
    """The requests a batch's fence checks: those its saves and fenced writes name."""
    ids: dict[str, None] = {}
    for sql, parameters in statements:
        if sql == SAVE_REQUEST:
            ids[parameters[SAVE_REQUEST_ID]] = None
        else:
            where = FENCED.get(sql)
            if where is not None:
                ids[parameters[where]] = None
    return list(ids)


def fence(
    statements: Iterable[Statement], held: dict[str, int]
) -> tuple[list[Statement], set[str]]:
    """A batch's writes past its fence, and the requests it lost.

    `held` is what `FENCE` read: each request this replica owns, at its epoch. The
    writes kept are, in order, the unfenced statements and the fenced ones whose
    request is held at the epoch they name (without that epoch); the saves are left
    out (they ran before the fence). Lost: the requests named but not held, or held at
    an older epoch than a write names. A request held at a newer epoch than a write
    names is still this replica's (run again, its save applied first in the same
    batch, or claimed back): only that older write is dropped.
    """
    kept: list[Statement] = []
    lost: set[str] = set()
    for sql, parameters in statements:
        if sql == SAVE_REQUEST:
            epoch = held.get(parameters[SAVE_REQUEST_ID])
            if epoch is None or epoch < parameters[SAVE_REQUEST_EPOCH]:
                lost.add(parameters[SAVE_REQUEST_ID])
            continue
        where = FENCED.get(sql)
        if where is None:
            kept.append((sql, parameters))
            continue
        request_id = parameters[where]
        epoch = held.get(request_id)
        if epoch == parameters[-1]:
            kept.append((sql, parameters[:-1]))
        elif epoch is None or epoch < parameters[-1]:
            lost.add(request_id)
    return kept, lost


def default_replica() -> str:
    """A replica id unique among live schedulers: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Lease:
    """Who this replica is, and how long its leases last."""

    replica: str
    #: Seconds a lease lasts; renewed every third of it.
    seconds: float

    def save_request(self, row: tuple[Any, ...], epoch: int) -> tuple[Any, ...]:
        return (*row, self.replica, epoch, self.seconds)

    def clear_subtasks(self, request_id: str, epoch: int) -> tuple[Any, ...]:
        return (request_id, epoch)

    def save_subtask(
        self, request_id: str, subtask_id: str, row: str, epoch: int
    ) -> tuple[Any, ...]:
        return (request_id, subtask_id, row, epoch)

    def finish_request(self, outcome: tuple[Any, ...], epoch: int) -> tuple[Any, ...]:
        return (*outcome, epoch)

    def renew(self) -> tuple[Any, ...]:
        return (self.seconds, self.replica)

    def claim(self, limit: int | None, mine: bool) -> dict[str, Any]:
        return {
            "me": self.replica,
            "lease": self.seconds,
            "mine": self.replica if mine else None,
            "limit": limit,
        }
