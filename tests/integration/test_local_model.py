"""Model backends against a real model: llama.cpp's server running Gemma 3 270M.

Both SDK paths run through the whole mesh (scheduler, an `openai` worker
and an `anthropic` worker as real processes), and the error mapping is
checked against the real server's answers. The model is tiny: these tests
check the plumbing (requests, structured output, repair, usage, errors),
not the quality of the answers. Through the OpenAI API the server's grammar
holds the model to the answer schema, so its answers must be valid; through
the Anthropic API (no tool forcing, no grammar for this model) an answer
may be invalid, and must then fail the documented way (INTERNAL, reason
OUTPUT_INVALID, after one repair).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from agentmesh.agents import localmodel
from agentmesh.agents.backends import make_model_backend
from agentmesh.agents.localmodel import LocalModelServer
from agentmesh.client import Goal
from agentmesh.errors import (
    AgentmeshError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from agentmesh.server.skills import SKILLS, output_violations
from agentmesh.v1 import plan_pb2, scheduler_pb2
from tests.support.local_model import MODEL_ALIAS
from tests.support.mesh import Mesh, refusing_address

pytestmark = [pytest.mark.integration, pytest.mark.llm]

KEY_ENV = "AGENTMESH_TEST_MODEL_KEY"
WRONG_KEY = "sk-wrong-0123456789abcdef0123456789abcdef"
TICKET = "My laptop (order ORD-884213) arrived broken. I want my money back!"
# Explicit prices, so that the cost a worker reports is checkable (the table says 0 locally).
LOCAL_EXTRA_BODY = localmodel.EXTRA_BODY
PRICES = {"AGENTMESH_INPUT_PRICE_PER_MTOK": "1.0", "AGENTMESH_OUTPUT_PRICE_PER_MTOK": "2.0"}


def model_env(server: LocalModelServer, provider: str, key: str) -> dict[str, str]:
    base_url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    return {
        "AGENTMESH_MODEL": MODEL_ALIAS,
        "AGENTMESH_MODEL_BASE_URL": base_url,
        "AGENTMESH_API_KEY_ENV": KEY_ENV,
        KEY_ENV: key,
        # Small answers keep a call to a few seconds on two CPU cores.
        "AGENTMESH_MODEL_MAX_TOKENS": "96",
        "AGENTMESH_MODEL_TEMPERATURE": "0",
        "AGENTMESH_MODEL_TIMEOUT": "60",
        # Penalties keep the tiny model from repeating itself up to the token limit.
        "AGENTMESH_MODEL_EXTRA_BODY": LOCAL_EXTRA_BODY,
        **PRICES,
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, local_model: LocalModelServer) -> Iterator[Mesh]:
    key = local_model.config.api_key
    mesh = Mesh(
        tmp_path_factory.mktemp("llm-mesh"),
        AGENTMESH_ATTEMPT_TIMEOUT="120",
        AGENTMESH_DEFAULT_DEADLINE="150",
        # One attempt: a failure is reported as it happened, not retried elsewhere.
        AGENTMESH_RETRY_MAX_ATTEMPTS="1",
    )
    try:
        mesh.start_scheduler()
        # Disjoint skills, so that each capability reaches the backend meant for it.
        mesh.start_worker(
            "oa",
            backend="openai",
            skills="translate,sentiment,plan",
            **model_env(local_model, "openai", key),
        )
        mesh.start_worker(
            "an",
            backend="anthropic",
            skills="detect_language",
            **model_env(local_model, "anthropic", key),
        )
        mesh.start_worker(
            "bad-key",
            backend="openai",
            skills="classify",
            **model_env(local_model, "openai", WRONG_KEY),
        )
        mesh.wait_workers({"oa", "an", "bad-key"})
        yield mesh
    finally:
        mesh.stop()


def assert_valid_or_output_invalid(capability: str, call: Any) -> Any:
    """The call's response if its output is valid; else its error must be OUTPUT_INVALID."""
    try:
        response = call()
    except AgentmeshError as error:
        assert error.code_name == "INTERNAL", error
        assert error.reason == "OUTPUT_INVALID", error
        assert "after one repair" in error.message
        return None
    assert not output_violations(SKILLS[capability], json_format.MessageToDict(response.output))
    return response


# -- through the mesh -----------------------------------------------------------------


def test_a_goal_is_planned_by_the_model(mesh: Mesh) -> None:
    """The planner path end to end: the model's plan is checked against the live mesh."""
    try:
        plan = mesh.client.decompose(
            Goal("Detect the language of the text"), {"text": "Bonjour"}, timeout=150
        )
    except AgentmeshError as error:
        # The tiny model's plan may not hold up: refused as documented, never anything else.
        assert (error.code_name, error.reason) in {
            ("INVALID_ARGUMENT", "PLANNER_INVALID_PLAN"),
            ("INTERNAL", "OUTPUT_INVALID"),
        }, error
        return
    offered = {"translate", "sentiment", "detect_language", "classify"}
    assert plan.steps and {s.capability for s in plan.steps} <= offered


def test_workers_declare_the_model(mesh: Mesh) -> None:
    workers = {w.info.worker_id: w.info for w in mesh.client.list_workers()}
    assert workers["oa"].backend == "openai" and workers["an"].backend == "anthropic"
    assert workers["oa"].model == MODEL_ALIAS
    assert workers["oa"].input_price_per_mtok == 1.0 and workers["oa"].output_price_per_mtok == 2.0


def test_openai_path_gives_schema_valid_output_with_usage(mesh: Mesh) -> None:
    data = {"text": "Thank you for your message.", "target_language": "de"}
    response = mesh.client.dispatch("translate", data, timeout=150)
    assert response.worker_id == "oa"
    output = json_format.MessageToDict(response.output)
    assert not output_violations(SKILLS["translate"], output)
    assert response.model == MODEL_ALIAS
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    expected_cost = (usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6
    assert usage.cost_usd == pytest.approx(expected_cost)


def test_openai_path_bounded_numbers_are_valid(mesh: Mesh) -> None:
    # A grammar does not bound a number's range; the answer schema's enum does.
    for text in (TICKET, "Thank you so much, everything arrived early!"):
        response = mesh.client.dispatch("sentiment", {"text": text}, timeout=150)
        output = json_format.MessageToDict(response.output)
        assert not output_violations(SKILLS["sentiment"], output), output
        assert -1 <= output["score"] <= 1


def test_anthropic_path_through_the_mesh(mesh: Mesh) -> None:
    response = assert_valid_or_output_invalid(
        "detect_language",
        lambda: mesh.client.dispatch("detect_language", {"text": TICKET}, timeout=150),
    )
    if response is not None:
        assert response.worker_id == "an"
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_request_usage_sums_its_subtasks(mesh: Mesh) -> None:
    # Optional steps: one answer the model botches still leaves a request to check sums on.
    plan = json_format.ParseDict(
        {
            "steps": [
                {
                    "id": step,
                    "capability": "translate",
                    "optional": True,
                    "inputs": {
                        "text": {"refs": ["request.text"]},
                        "target_language": {"value": lang},
                    },
                }
                for step, lang in (("first", "de"), ("second", "fr"))
            ],
            "answer": {"text": {"refs": ["steps.first.text", "steps.second.text"]}},
        },
        plan_pb2.Plan(),
    )
    request = mesh.client.submit(
        plan,
        {"text": "Thank you for your message."},
        timeout=150,
        view=scheduler_pb2.REQUEST_VIEW_FULL,
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
    succeeded = [s for s in request.subtasks if s.state == scheduler_pb2.SUBTASK_STATE_SUCCEEDED]
    assert succeeded, request.subtasks
    assert all(s.usage.input_tokens > 0 and s.usage.output_tokens > 0 for s in succeeded)
    assert request.usage.input_tokens == sum(s.usage.input_tokens for s in request.subtasks)
    assert request.usage.output_tokens == sum(s.usage.output_tokens for s in request.subtasks)
    assert request.usage.cost_usd == pytest.approx(sum(s.usage.cost_usd for s in request.subtasks))
    assert request.usage.cost_usd > 0


def test_wrong_key_is_a_configuration_error_through_the_mesh(mesh: Mesh) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        mesh.client.dispatch("classify", {"text": TICKET}, timeout=60)
    assert caught.value.reason == "MODEL_AUTH"
    assert KEY_ENV in caught.value.message
    assert WRONG_KEY not in caught.value.message
    assert WRONG_KEY not in mesh.log("bad-key")


# -- error mapping against the real server -----------------------------------------------

PROVIDERS = ("openai", "anthropic")


def run_skill(env: dict[str, str], provider: str, data: dict[str, Any]) -> Any:
    backend = make_model_backend(provider, env)
    return asyncio.run(backend.run(SKILLS["detect_language"], data))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_key_is_model_auth(local_model: LocalModelServer, provider: str) -> None:
    env = model_env(local_model, provider, WRONG_KEY)
    with pytest.raises(FailedPrecondition) as caught:
        run_skill(env, provider, {"text": TICKET})
    assert caught.value.reason == "MODEL_AUTH"
    assert KEY_ENV in caught.value.message
    for text in (caught.value.message, str(caught.value.metadata), repr(caught.value)):
        assert WRONG_KEY not in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unreachable_server_is_unavailable(local_model: LocalModelServer, provider: str) -> None:
    env = model_env(local_model, provider, local_model.config.api_key)
    with refusing_address() as address, pytest.raises(Unavailable) as caught:
        env["AGENTMESH_MODEL_BASE_URL"] = f"http://{address}"
        run_skill(env, provider, {"text": TICKET})
    assert caught.value.reason == "MODEL_UNREACHABLE"
    assert local_model.config.api_key not in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_slow_answer_is_deadline_exceeded(local_model: LocalModelServer, provider: str) -> None:
    env = model_env(local_model, provider, local_model.config.api_key)
    env["AGENTMESH_MODEL_TIMEOUT"] = "0.05"
    with pytest.raises(DeadlineExceeded) as caught:
        run_skill(env, provider, {"text": TICKET})
    assert caught.value.reason == "MODEL_TIMEOUT"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_input_beyond_the_context_is_invalid_argument(
    local_model: LocalModelServer,
    provider: str,
) -> None:
    env = model_env(local_model, provider, local_model.config.api_key)
    too_long = " ".join(f"word{i}" for i in range(6000))  # far more tokens than a 2048 slot
    with pytest.raises(InvalidArgument) as caught:
        run_skill(env, provider, {"text": too_long})
    assert caught.value.reason == "MODEL_BAD_REQUEST"
    assert caught.value.metadata["http_status"] == "400"
    assert local_model.config.api_key not in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_path_is_model_not_found(local_model: LocalModelServer, provider: str) -> None:
    env = model_env(local_model, provider, local_model.config.api_key)
    env["AGENTMESH_MODEL_BASE_URL"] = f"{local_model.base_url}/no-such-api"
    with pytest.raises(FailedPrecondition) as caught:
        run_skill(env, provider, {"text": TICKET})
    assert caught.value.reason == "MODEL_NOT_FOUND"
    assert "AGENTMESH_MODEL_BASE_URL" in caught.value.message
