"""A workflow template in AGENTMESH_WORKFLOWS_DIR may name any capability, a team's own
skills included: it loads and decomposes without knowing them, and whether they exist is
checked when a request runs, against the capabilities of the live mesh."""

from __future__ import annotations

import pytest

from agentmesh.errors import InvalidArgument
from agentmesh.scheduler.plans import validate_plan
from agentmesh.scheduler.workflows import WorkflowLibrary
from tests.support.mesh import ROOT

FOLDER = ROOT / "examples" / "agents" / "returns" / "workflows"
REQUEST = {"text": "Please take it back.", "order_id": "ORD-1001", "requested_on": "2026-11-25"}
OWN = frozenset({"lookup_order", "apply_return_policy", "customer_reply"})
BUILT_IN = frozenset({"detect_language", "sentiment"})


def test_a_template_naming_own_skills_loads_beside_the_built_in_ones() -> None:
    library = WorkflowLibrary.load(FOLDER)
    assert {"order_return", "support_ticket"} <= set(library.names())
    plan = library.decompose("order_return", REQUEST, 64)
    assert {s.capability for s in plan.steps} == OWN | BUILT_IN


def test_its_capabilities_are_checked_against_the_live_mesh_when_it_runs() -> None:
    plan = WorkflowLibrary.load(FOLDER).decompose("order_return", REQUEST, 64)
    validate_plan(plan, OWN | BUILT_IN, 64)
    with pytest.raises(InvalidArgument) as raised:
        validate_plan(plan, BUILT_IN | {"lookup_order", "apply_return_policy"}, 64)
    assert "customer_reply" in str(raised.value)
