"""Cost-aware routing across real processes: tiers by difficulty, cost budgets."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from agentmesh.errors import FailedPrecondition
from agentmesh.v1 import scheduler_pb2, worker_pb2
from tests.support.mesh import ROOT, Mesh

pytestmark = pytest.mark.integration

TICKET = json.loads(sorted((ROOT / "examples" / "tickets").glob("*.json"))[0].read_text())
LARGE = {
    "AGENTMESH_TIER": "large",
    "AGENTMESH_SIM_LATENCY": "0.005",
    "AGENTMESH_SIM_INPUT_PRICE": "3",
    "AGENTMESH_SIM_OUTPUT_PRICE": "15",
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path_factory.mktemp("routing"))
    try:
        mesh.start_scheduler()
        mesh.start_worker("cheap")
        mesh.start_worker("big", backend="sim", **LARGE)
        mesh.wait_workers({"cheap", "big"})
        yield mesh
    finally:
        mesh.stop()


def test_simple_subtasks_go_to_the_cheap_tier_and_nuanced_to_large(mesh: Mesh) -> None:
    request = mesh.client.submit("support_ticket", TICKET, view=scheduler_pb2.REQUEST_VIEW_FULL)
    by_id = {s.id: s for s in request.subtasks if s.worker_id}
    assert (by_id["reply"].worker_id, by_id["reply"].tier) == ("big", worker_pb2.TIER_LARGE)
    for step in ("entities", "language", "sentiment", "summary", "triage"):
        assert (by_id[step].worker_id, by_id[step].tier) == ("cheap", worker_pb2.TIER_BUILTIN)
    # Cost is reported per subtask and summed per request.
    assert by_id["reply"].usage.cost_usd > 0 and by_id["reply"].usage.input_tokens > 0
    assert request.usage.cost_usd == pytest.approx(sum(s.usage.cost_usd for s in request.subtasks))
    body = urllib.request.urlopen(f"http://127.0.0.1:{mesh.metrics_port}/metrics", timeout=5)
    text = body.read().decode()
    assert (
        'agentmesh_subtasks_total{capability="draft_reply",outcome="succeeded",tier="large"}'
        in text
    )
    assert 'agentmesh_cost_usd_total{model="sim-builtin"}' in text


def test_a_tight_budget_downgrades_to_a_cheaper_tier(mesh: Mesh) -> None:
    request = mesh.client.submit(
        "support_ticket", TICKET, cost_budget_usd=0.000001, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    reply = next(s for s in request.subtasks if s.id == "reply")
    assert (reply.worker_id, reply.tier) == ("cheap", worker_pb2.TIER_BUILTIN)
    assert request.cost_budget_usd == pytest.approx(0.000001)
    assert request.usage.cost_usd == 0


def test_a_budget_no_tier_fits_fails_clearly(tmp_path) -> None:
    mesh = Mesh(tmp_path)
    try:
        mesh.start_scheduler()
        mesh.start_worker("big", backend="sim", **LARGE)
        mesh.wait_workers({"big"})
        with pytest.raises(FailedPrecondition, match="budget") as error:
            mesh.client.submit("support_ticket", TICKET, cost_budget_usd=0.000001, request_id="b-1")
        assert error.value.reason == "BUDGET_EXCEEDED"
        record = mesh.client.get_request("b-1")
        assert record.state == scheduler_pb2.REQUEST_STATE_FAILED
        assert record.error.code == "FAILED_PRECONDITION"
    finally:
        mesh.stop()
