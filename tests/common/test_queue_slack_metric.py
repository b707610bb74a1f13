"""The scheduler's queue gauges: the least slack of each capability's queue."""

from __future__ import annotations

from agentmesh.server.metrics import MeshCollector, MeshSnapshot


def test_least_slack_is_a_gauge_by_capability_with_no_sample_for_an_empty_queue() -> None:
    snapshot = MeshSnapshot(
        workers=[],
        queues={"summarize": (3, 1.5), "classify": (0, 0.0)},
        active_requests=2,
        least_slack={"summarize": -0.25},
    )
    families = {f.name: f for f in MeshCollector(lambda: snapshot).collect()}
    slack = families["agentmesh_queue_least_slack_seconds"]
    assert slack.type == "gauge"
    assert [(s.labels, s.value) for s in slack.samples] == [({"capability": "summarize"}, -0.25)]
    # The other queue gauges keep a sample for every queue.
    assert len(families["agentmesh_queue_depth"].samples) == 2
