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

Fencing: every write of a running request is conditioned on the owner and
epoch its writer holds it at, and returns a row when it applied. A write
that returns none (`Fenced.lost`) means the request has a newer owner: the
replica stops running it, and nothing it finishes afterwards is applied.
The condition locks the request's row (`FOR SHARE`) for the write, so that a
takeover either waits for the write's transaction, then reads what it
wrote, or comes first, and the write then finds the new epoch and is
refused. Every statement can still be applied twice with the same result
(the writer may commit a batch again when a connection is lost mid-commit).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

#: A new request (owner: this replica, epoch 1), or one run again (the epoch after the
#: one read): applied only over a finished row with an older epoch, or over its own
#: row (the same statement committed again, or its own request run again). Returns the
#: id when it applied.
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
    " RETURNING request_id"
)
CLEAR_SUBTASKS = (
    "DELETE FROM subtasks WHERE request_id = %s AND EXISTS (SELECT 1 FROM requests o"
    " WHERE o.request_id = %s AND o.owner = %s AND o.epoch = %s FOR SHARE)"
)
SAVE_SUBTASK = (
    "INSERT INTO subtasks (request_id, subtask_id, record)"
    " SELECT o.request_id, %s, %s FROM requests o"
    " WHERE o.request_id = %s AND o.owner = %s AND o.epoch = %s FOR SHARE"
    " ON CONFLICT (request_id, subtask_id) DO UPDATE SET record = EXCLUDED.record"
    " RETURNING request_id"
)
FINISH_REQUEST = (
    "UPDATE requests SET state = %s, answer = %s, error = %s, finished_at = %s"
    " WHERE request_id = %s AND owner = %s AND epoch = %s RETURNING request_id"
)
#: Every running request of one replica: its lease from now.
RENEW = (
    "UPDATE requests SET lease_until = now() + %s * interval '1 second'"
    " WHERE owner = %s AND state = 'RUNNING'"
)
#: At a clean stop: this replica's running requests are left for the others (or its
#: successor) to take at once, rather than when their leases expire.
RELEASE = "UPDATE requests SET lease_until = NULL WHERE owner = %s AND state = 'RUNNING'"
#: Running requests whose lease has expired (another replica's) or that are this
#: replica's own (`mine`: at start, for a replica that keeps its id across restarts; NULL
#: otherwise), at most `limit` (NULL: all), claimed with the next epoch; the ids and epochs.
CLAIM = (
    "UPDATE requests SET owner = %(me)s, epoch = epoch + 1,"
    " lease_until = now() + %(lease)s * interval '1 second'"
    " WHERE request_id IN (SELECT request_id FROM requests WHERE state = 'RUNNING' AND"
    " ((owner <> %(me)s AND (lease_until IS NULL OR lease_until < now()))"
    " OR owner = %(mine)s) LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " RETURNING request_id"
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

#: Fenced statements, and where the request's key (the request_id column) is in their
#: parameters: a write that returns no row lost its request.
FENCED = {SAVE_REQUEST: 0, SAVE_SUBTASK: 2, FINISH_REQUEST: 4}


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
        return (request_id, request_id, self.replica, epoch)

    def save_subtask(
        self, request_id: str, subtask_id: str, row: str, epoch: int
    ) -> tuple[Any, ...]:
        return (subtask_id, row, request_id, self.replica, epoch)

    def finish_request(self, outcome: tuple[Any, ...], epoch: int) -> tuple[Any, ...]:
        return (*outcome, self.replica, epoch)

    def renew(self) -> tuple[Any, ...]:
        return (self.seconds, self.replica)

    def claim(self, limit: int | None, mine: bool) -> dict[str, Any]:
        return {
            "me": self.replica,
            "lease": self.seconds,
            "mine": self.replica if mine else None,
            "limit": limit,
        }
