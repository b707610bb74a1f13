"""The order-returns example (examples/agents/returns) on real processes, without a model:
its Python skills on one worker and built-in skills on another run a client-supplied plan
end to end; the `order_return` workflow from AGENTMESH_WORKFLOWS_DIR is refused at run time
while no worker offers its declared skill; a worker on the builtin backend refuses the
declared skill at start. The whole workflow, with the model, is
test_example_returns_llm.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import struct_to_dict
from tests.support.mesh import ROOT, Mesh

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "agents" / "returns"


def example_input(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLE / "inputs" / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(
        tmp_path_factory.mktemp("returns"), AGENTMESH_WORKFLOWS_DIR=str(EXAMPLE / "workflows")
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker("shop", args=("--skills-module", str(EXAMPLE / "returns.py")))
        mesh.start_worker("text", skills="detect_language,sentiment")
        mesh.wait_workers({"shop", "text"})
        yield mesh
    finally:
        mesh.stop()


def ref(*refs: str) -> plan_pb2.Binding:
    return plan_pb2.Binding(refs=list(refs))


# The workflow's steps but the reply: what runs without a model.
PLAN = plan_pb2.Plan(
    steps=[
        plan_pb2.PlanStep(
            id="order", capability="lookup_order", inputs={"order_id": ref("request.order_id")}
        ),
        plan_pb2.PlanStep(
            id="language", capability="detect_language", inputs={"text": ref("request.text")}
        ),
        plan_pb2.PlanStep(
            id="sentiment", capability="sentiment", inputs={"text": ref("request.text")}
        ),
        plan_pb2.PlanStep(
            id="policy",
            capability="apply_return_policy",
            depends_on=["order"],
            inputs={"order": ref("steps.order"), "requested_on": ref("request.requested_on")},
        ),
    ],
    answer={
        "customer": ref("steps.order.customer"),
        "decision": ref("steps.policy.decision"),
        "refund": ref("steps.policy.refund"),
        "reasons": ref("steps.policy.reasons"),
        "language": ref("steps.language.language"),
        "sentiment": ref("steps.sentiment.label"),
    },
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("01_keyboard_en.json", {"decision": "accepted", "refund": 101.5, "language": "en"}),
        ("02_headphones_de.json", {"decision": "refused", "refund": 0, "language": "de"}),
        ("03_gift_card_fr.json", {"decision": "partial", "refund": 45, "language": "fr"}),
    ],
)
def test_the_python_skills_and_built_in_ones_decide_each_example(
    mesh: Mesh, name: str, expected: dict[str, Any]
) -> None:
    request = mesh.client.submit(PLAN, example_input(name), view=scheduler_pb2.REQUEST_VIEW_FULL)
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request
    answer = struct_to_dict(request.answer)
    assert {k: answer[k] for k in expected} == expected
    workers = {s.id: s.worker_id for s in request.subtasks}
    assert workers == {"order": "shop", "policy": "shop", "language": "text", "sentiment": "text"}


def test_an_unknown_order_fails_the_request_as_not_found(mesh: Mesh) -> None:
    data = {**example_input("01_keyboard_en.json"), "order_id": "ORD-9999"}
    with pytest.raises(AgentmeshError) as raised:
        mesh.client.submit(PLAN, data, request_id="unknown-order")
    # The cause, not the policy step that would have run without its order.
    assert raised.value.code_name == "NOT_FOUND", raised.value
    assert "no order ORD-9999" in raised.value.message
    record = mesh.client.get_request("unknown-order")
    assert record.state == scheduler_pb2.REQUEST_STATE_FAILED
    steps = {s.id: s for s in record.subtasks}
    assert steps["order"].error.code == "NOT_FOUND", steps["order"].error
    assert steps["policy"].state == scheduler_pb2.SUBTASK_STATE_CANCELLED


def test_the_workflow_is_refused_at_run_time_without_its_declared_skill(mesh: Mesh) -> None:
    with pytest.raises(AgentmeshError) as raised:
        mesh.client.submit("order_return", example_input("01_keyboard_en.json"))
    assert raised.value.code_name == "INVALID_ARGUMENT", raised.value
    assert "customer_reply" in raised.value.message


def test_a_builtin_worker_refuses_the_declared_skill_at_start(mesh: Mesh, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmesh",
            "worker",
            "--target",
            mesh.target,
            "--skills-dir",
            str(EXAMPLE / "skills"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode != 0
    assert "customer_reply.toml" in run.stderr
    assert "--backend openai|anthropic|local" in run.stderr
    assert "Traceback" not in run.stderr
