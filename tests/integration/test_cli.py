"""The `agentmesh` command as a person types it: one-line errors, honest answers, proto names."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import ROOT, Mesh, running_mesh

pytestmark = pytest.mark.integration

TICKET = sorted((ROOT / "examples" / "tickets").glob("*.json"))[0]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("cli")) as mesh:
        yield mesh


def agentmesh(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", "--log-level", "WARNING", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def one_line_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    assert run.returncode == 2, run
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert all(word in run.stderr for word in words), run.stderr


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line_error(agentmesh("submit", str(tmp_path / "missing.json")), "missing.json")
    one_line_error(agentmesh("plan", str(tmp_path / "missing.txt")), "missing.txt")


def test_invalid_json_in_a_json_file_is_refused_not_sent_as_text(tmp_path: Path) -> None:
    broken = tmp_path / "ticket.json"
    broken.write_text('{"text": "My order never came",}')
    one_line_error(agentmesh("submit", str(broken)), "ticket.json", "not valid JSON")
    listed = tmp_path / "list.json"
    listed.write_text('["a", "b"]')
    one_line_error(agentmesh("submit", str(listed)), "list.json", "not an object")


def test_plain_text_from_a_text_file_or_stdin_is_the_ticket_text(
    mesh: Mesh, tmp_path: Path
) -> None:
    note = tmp_path / "ticket.txt"
    note.write_text("My order ORD-123456 never arrived.")
    for args, stdin in (((str(note),), ""), (("-",), note.read_text())):
        run = agentmesh("plan", *args, "--target", mesh.target, stdin=stdin)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["steps"]


def test_output_uses_the_proto_field_names(mesh: Mesh) -> None:
    run = agentmesh("submit", str(TICKET), "--target", mesh.target, "--no-stream")
    assert run.returncode == 0, run.stderr
    request = json.loads(run.stdout)
    assert "request_id" in request and "requestId" not in request
    assert all(
        "worker_id" in s for s in request["subtasks"] if s["state"] != "SUBTASK_STATE_SKIPPED"
    )
    run = agentmesh("workers", "--json", "--target", mesh.target)
    assert json.loads(run.stdout)[0]["latency_estimate"]


def test_workers_for_a_capability_nobody_offers_says_so(mesh: Mesh) -> None:
    run = agentmesh("workers", "--capability", "translate", "--target", mesh.target)
    assert run.returncode == 1
    assert "no worker offers capability 'translate'" in run.stderr
    run = agentmesh("workers", "--capability", "sentiment", "--target", mesh.target)
    assert run.returncode == 0 and "w1" in run.stdout
