"""Offload across real processes: plan fragments run on a worker step to step, a worker
SIGKILLed midway leaves no step completed twice, a fragment step whose output fails its
schema falls back to a retry of its own, and GetRequest shows who ran what together."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmesh.v1 import plan_pb2, scheduler_pb2
from agentmesh.wire import struct_to_dict
from tests.support.mesh import Mesh, wait_for

pytestmark = pytest.mark.integration

SKILLS = """
import asyncio, json, os
from agentmesh.agents import skill

TEXT = {"type": "object", "properties": {"text": {"type": "string", "minLength": 1}},
        "required": ["text"]}


def mark(context) -> None:
    with open(os.environ["STEP_LOG"], "a") as log:
        log.write(json.dumps([context.subtask_id, os.environ["AGENTMESH_WORKER_ID"]]) + "\\n")


@skill(name="slow_step", description="Append the step's id to a text, slowly.",
       input_schema=TEXT, output_schema=TEXT)
async def slow_step(input: dict, context) -> dict:
    await asyncio.sleep(float(os.environ.get("STEP_SECONDS", "0")))
    mark(context)
    return {"text": input["text"] + "+" + context.subtask_id}


@skill(name="picky_step", description="Append the step's id; a broken worker answers junk.",
       input_schema=TEXT, output_schema=TEXT)
async def picky_step(input: dict, context) -> dict:
    mark(context)
    if os.environ.get("PICKY_BROKEN"):
        return {"junk": True}
    return {"text": input["text"] + "+" + context.subtask_id}
"""


def chain(*capabilities: str) -> plan_pb2.Plan:
    steps = []
    for i, capability in enumerate(capabilities):
        source = "request.text" if i == 0 else f"steps.s{i - 1}.text"
        steps.append(
            plan_pb2.PlanStep(
                id=f"s{i}",
                capability=capability,
                inputs={"text": plan_pb2.Binding(refs=[source])},
                depends_on=[f"s{i - 1}"] if i else [],
            )
        )
    last = f"steps.s{len(capabilities) - 1}.text"
    return plan_pb2.Plan(steps=steps, answer={"text": plan_pb2.Binding(refs=[last])})


@pytest.fixture
def skills(tmp_path: Path) -> tuple[str, str]:
    module = tmp_path / "fragment_skills.py"
    module.write_text(SKILLS)
    return ("--skills-module", str(module))


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path, AGENTMESH_OFFLOAD="always")
    try:
        mesh.start_scheduler()
        yield mesh
    finally:
        mesh.stop()


def marks(log: Path) -> list[tuple[str, str]]:
    """(step, worker) of every step a worker completed, in order."""
    if not log.exists():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]


def test_a_chain_runs_as_one_fragment_and_get_request_shows_it(
    mesh: Mesh, skills: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    for name in ("w1", "w2"):
        mesh.start_worker(name, args=skills, STEP_LOG=str(log))
    mesh.wait_workers({"w1", "w2"})
    request = mesh.client.submit(
        chain("slow_step", "picky_step", "slow_step"),
        {"text": "t"},
        view=scheduler_pb2.REQUEST_VIEW_FULL,
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
    assert struct_to_dict(request.answer) == {"text": "t+s0+s1+s2"}
    (worker,) = {s.worker_id for s in request.subtasks}
    assert [(s.fragment, s.attempts) for s in request.subtasks] == [("s0", 1)] * 3
    assert [step for step, _ in marks(log)] == ["s0", "s1", "s2"]
    assert {w for _, w in marks(log)} == {worker}
    # The same view from GetRequest, and the two steps that followed counted as offloaded.
    again = mesh.client.get_request(request.request_id)
    assert [s.fragment for s in again.subtasks] == ["s0", "s0", "s0"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{mesh.metrics_port}/metrics").read()
    offloaded = re.findall(rb"^agentmesh_offloaded_steps_total\{[^}]*\} (\S+)$", metrics, re.M)
    assert sum(float(v) for v in offloaded) == 2


def test_a_worker_killed_midway_leaves_no_step_completed_twice(
    mesh: Mesh, skills: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    for name in ("w1", "w2"):
        mesh.start_worker(name, args=skills, STEP_LOG=str(log), STEP_SECONDS="0.6")
    mesh.wait_workers({"w1", "w2"})
    events: list[scheduler_pb2.StreamSubmitResponse] = []

    def submit() -> None:
        events.extend(
            mesh.client.stream_submit(
                chain(*["slow_step"] * 5),
                {"text": "t"},
                request_id="killed-midway",
                view=scheduler_pb2.REQUEST_VIEW_FULL,
                timeout=60,
            )
        )

    client = threading.Thread(target=submit)
    client.start()

    def second_step_done() -> str:
        try:
            request = mesh.client.get_request("killed-midway")
        except Exception:  # not committed yet
            return ""
        s1 = request.subtasks[1]
        return s1.worker_id if s1.state == scheduler_pb2.SUBTASK_STATE_SUCCEEDED else ""

    victim = str(wait_for(second_step_done, 30, "the fragment's second step"))
    mesh.kill(victim)
    client.join(60)
    assert not client.is_alive()
    final = events[-1].result
    assert final.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, final.error
    assert struct_to_dict(final.answer) == {"text": "t+s0+s1+s2+s3+s4"}
    s0, s1, s2, s3, s4 = final.subtasks
    assert (s0.worker_id, s0.fragment, s0.attempts) == (victim, "s0", 1)
    assert (s1.worker_id, s1.fragment, s1.attempts) == (victim, "s0", 1)
    survivor = ({"w1", "w2"} - {victim}).pop()
    # The fragment's try, then its own, on the other worker (or a third, when the second
    # went to the killed worker before the scheduler saw it gone).
    assert s2.worker_id == survivor and s2.attempts >= 2
    assert {s3.worker_id, s4.worker_id} == {survivor}
    # Every step completed once: by a worker, and in the scheduler's record.
    assert Counter(step for step, _ in marks(log)) == Counter(["s0", "s1", "s2", "s3", "s4"])
    succeeded = Counter(
        e.subtask.subtask_id
        for e in events
        if e.HasField("subtask") and e.subtask.kind == scheduler_pb2.SUBTASK_EVENT_KIND_SUCCEEDED
    )
    assert succeeded == Counter(["s0", "s1", "s2", "s3", "s4"])


def test_a_fragment_step_whose_output_fails_its_schema_is_retried_on_its_own(
    mesh: Mesh, skills: tuple[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    # The small worker is the one a dispatch chooses, and it answers picky_step with junk;
    # the large one answers it well, and gets it once the small one's output was refused.
    mesh.start_worker(
        "small", args=skills, STEP_LOG=str(log), PICKY_BROKEN="1", AGENTMESH_TIER="small"
    )
    mesh.start_worker("large", args=skills, STEP_LOG=str(log), AGENTMESH_TIER="large")
    mesh.wait_workers({"small", "large"})
    request = mesh.client.submit(
        chain("slow_step", "picky_step", "slow_step"),
        {"text": "t"},
        view=scheduler_pb2.REQUEST_VIEW_FULL,
    )
    assert request.state == scheduler_pb2.REQUEST_STATE_SUCCEEDED, request.error
    assert struct_to_dict(request.answer) == {"text": "t+s0+s1+s2"}
    s0, s1, s2 = request.subtasks
    assert (s0.worker_id, s0.fragment, s0.attempts) == ("small", "s0", 1)
    # Its next attempt starts a tier up, as after any output refused by its schema.
    assert (s1.worker_id, s1.fragment, s1.attempts) == ("large", "", 2)
    # The step after it did not run in the broken fragment: it ran once, on its own.
    assert s2.fragment == "" and s2.attempts == 2
    assert Counter(step for step, _ in marks(log))["s2"] == 1
