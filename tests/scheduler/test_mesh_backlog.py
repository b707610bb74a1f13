"""The backlog of several schedulers over one store: each replica's, written as JSON and
summed by every replica, so that the autoscaler sees the mesh's."""

from __future__ import annotations

import json

from agentmesh.scheduler import backlog
from agentmesh.scheduler.backlog import Pool, ReplicaBacklog
from agentmesh.tiers import Tier
from tests.scheduler.test_backlog import join, make, submit
from tests.support.fakes import settle


async def test_another_replicas_backlog_adds_to_this_ones() -> None:
    dispatcher, clock, transport = make()
    join(dispatcher, "w1", tier=Tier.SMALL)
    tasks = submit(dispatcher, 3)  # one runs on w1 (capacity 1), two wait
    await settle()
    await clock.advance(2.0)
    mine = ReplicaBacklog.from_json(backlog.local_backlog(dispatcher.registry, dispatcher.slots))
    assert mine.waiting("echo", int(Tier.SMALL)) == (2, 2.0)
    assert mine.in_flight == {"w1": 1}

    other = ReplicaBacklog.from_json(
        json.dumps(
            {
                "queues": {"echo": {str(int(Tier.SMALL)): [4, 5.0]}, "new": {"j": [1, 1.0]}},
                "in_flight": {"w1": 1, "elsewhere": 3},
            }
        )
    )
    pool = Pool.from_metadata({"tier": "small"})
    alone = backlog.measure(pool, dispatcher.registry, dispatcher.slots, dispatcher.latencies)
    mesh = backlog.measure(
        pool, dispatcher.registry, dispatcher.slots, dispatcher.latencies, [other]
    )
    assert (alone.queued, alone.in_flight, alone.oldest_wait) == (2, 1, 2.0)
    # Its queue, and its subtask waiting for a worker of a capability this one has not seen;
    # in flight only on this pool's workers (w1), not on a worker this replica does not know.
    assert (mesh.queued, mesh.in_flight, mesh.oldest_wait) == (2 + 4 + 1, 2, 5.0)
    assert mesh.metric > alone.metric
    other_tier = Pool.from_metadata({"tier": "large"})
    assert (
        backlog.measure(
            other_tier, dispatcher.registry, dispatcher.slots, dispatcher.latencies, [other]
        ).queued
        == 1
    )  # only the subtask waiting for any worker to register
    transport.gate.set()
    for task in tasks:
        await task
