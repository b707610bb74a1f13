"""The order-returns example's whole workflow on the real local model: `order_return` from
AGENTMESH_WORKFLOWS_DIR, the Python skills and the declared `customer_reply` on a worker
whose backend is the local llama.cpp server, the built-in skills on another. The model is
tiny: the test checks the plumbing (the declared skill registered with its contract, one
structured call, its usage on the step), not the reply's quality."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentmesh.agents import localmodel
from agentmesh.agents.localmodel import LocalModelServer
from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import struct_to_dict
from tests.support.local_model import MODEL_ALIAS
from tests.support.mesh import ROOT, Mesh

pytestmark = [pytest.mark.integration, pytest.mark.llm]

EXAMPLE = ROOT / "examples" / "agents" / "returns"
KEY_ENV = "AGENTMESH_TEST_MODEL_KEY"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, local_model: LocalModelServer) -> Iterator[Mesh]:
    mesh = Mesh(
        tmp_path_factory.mktemp("returns-llm"),
        AGENTMESH_WORKFLOWS_DIR=str(EXAMPLE / "workflows"),
        AGENTMESH_ATTEMPT_TIMEOUT="120",
        AGENTMESH_DEFAULT_DEADLINE="150",
        AGENTMESH_RETRY_MAX_ATTEMPTS="1",
    )
    try:
        mesh.start_scheduler()
        mesh.start_worker(
            "shop",
            backend="openai",
            args=(
                "--skills-module",
                str(EXAMPLE / "returns.py"),
                "--skills-dir",
                str(EXAMPLE / "skills"),
            ),
            AGENTMESH_MODEL=MODEL_ALIAS,
            AGENTMESH_MODEL_BASE_URL=local_model.openai_base_url,
            AGENTMESH_API_KEY_ENV=KEY_ENV,
            AGENTMESH_TEST_MODEL_KEY=local_model.config.api_key,
            AGENTMESH_MODEL_MAX_TOKENS="160",
            AGENTMESH_MODEL_TIMEOUT="90",
            AGENTMESH_MODEL_EXTRA_BODY=localmodel.EXTRA_BODY,
            AGENTMESH_INPUT_PRICE_PER_MTOK="1.0",
            AGENTMESH_OUTPUT_PRICE_PER_MTOK="2.0",
        )
        mesh.start_worker("text", skills="detect_language,sentiment")
        mesh.wait_workers({"shop", "text"})
        yield mesh
    finally:
        mesh.stop()


def test_the_order_return_workflow_runs_end_to_end_with_the_declared_skill(mesh: Mesh) -> None:
    shop = next(w for w in mesh.client.list_workers() if w.info.worker_id == "shop")
    assert sorted(shop.info.capabilities) == [
        "apply_return_policy",
        "customer_reply",
        "lookup_order",
    ]
    reply_spec = next(s for s in shop.skills if s.name == "customer_reply")
    assert reply_spec.difficulty == plan_pb2.DIFFICULTY_NUANCED
    assert struct_to_dict(reply_spec.output_schema)["required"] == ["reply"]

    data: dict[str, Any] = json.loads((EXAMPLE / "inputs" / "03_gift_card_fr.json").read_text())
    request = mesh.client.submit(
        "order_return", data, timeout=170, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request
    answer = struct_to_dict(request.answer)
    assert (answer["decision"], answer["refund"], answer["language"]) == ("partial", 45, "fr")
    assert isinstance(answer["reply"], str) and answer["reply"].strip()
    reply = next(s for s in request.subtasks if s.id == "reply")
    assert reply.worker_id == "shop"
    assert reply.model  # the model that answered, as the server named it
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.usage.cost_usd > 0
    print(f"\nreply ({reply.duration.ToTimedelta().total_seconds():.1f} s): {answer['reply']!r}")
