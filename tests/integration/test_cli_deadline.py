"""`agentmesh submit` and deadlines: a model's plan gets room, and a request that runs out
of time says so, and how to give it more."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from agentmesh.cli import SUBMIT_TIMEOUT, parser
from tests.support.mesh import ROOT, Mesh

pytestmark = pytest.mark.integration

TICKET = sorted((ROOT / "examples" / "tickets").glob("*.json"))[0]


@pytest.fixture(scope="module")
def slow_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """One simulated model worker taking about 2 s a step."""
    mesh = Mesh(tmp_path_factory.mktemp("cli-deadline"))
    try:
        mesh.start_scheduler()
        mesh.start_worker("slow", backend="sim", AGENTMESH_SIM_LATENCY="2", AGENTMESH_SIM_SIGMA="0")
        mesh.wait_workers({"slow"})
        yield mesh
    finally:
        mesh.stop()


def test_submit_gives_a_request_minutes_by_default() -> None:
    args = parser().parse_args(["submit", str(TICKET)])
    assert args.timeout == SUBMIT_TIMEOUT >= 300
    assert parser().parse_args(["plan", str(TICKET)]).timeout == 60


@pytest.mark.parametrize("stream", [True, False])
def test_a_request_out_of_time_says_how_to_give_it_more(slow_mesh: Mesh, stream: bool) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmesh",
            "--log-level",
            "WARNING",
            "submit",
            str(TICKET),
            "--target",
            slow_mesh.target,
            "--timeout",
            "1",
            *([] if stream else ["--no-stream"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "did not fit in its deadline of 1 s (--timeout)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
