"""The benchmark suite's smoke run: the same code as `make bench`, tiny counts.

It checks the shape of what `make bench` writes, not the numbers (the smoke
run's counts are far too small to mean anything), so that the benchmarks
cannot rot unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S9", "S10", "TLS")


@pytest.mark.timeout(240)
def test_smoke_run_writes_every_scenario_with_its_targets(tmp_path: Path) -> None:
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--logs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]

    results = json.loads((out / "latest.json").read_text())
    for key in SCENARIOS:
        assert key in results, f"{key} missing from latest.json"
        scenario = results[key]
        assert "error" not in scenario["metrics"], scenario["metrics"]
        assert scenario["metrics"], f"{key} has no metrics"
        assert scenario["targets"], f"{key} has no targets"
        for name, target in scenario["targets"].items():
            assert {"value", "goal", "met"} <= set(target), f"{key}.{name}: {target}"
            assert isinstance(target["met"], bool), f"{key}.{name}: {target}"
            assert isinstance(target["goal"], int | float), f"{key}.{name}: {target}"
            if target["value"] is not None:
                assert isinstance(target["value"], int | float), f"{key}.{name}: {target}"
    assert results["meta"]["smoke"] is True
    assert set(results["S7"]["targets"]) == {"p50_excess_ms", "p95_excess_ms"}
    assert set(results["S9"]["targets"]) == {"met_share_gain", "p99_ratio"}
    assert set(results["S10"]["targets"]) == {"worker_hours_ratio", "p95_queue_wait"}
    # The local model never runs in a smoke run: written as skipped, under its key.
    assert "skipped" in results["LM"]["metrics"], results["LM"]

    table = (out / "latest.md").read_text()
    for key in SCENARIOS:
        assert f"| {key} " in table
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoke_measures_what_the_scenarios_are_about(tmp_path: Path) -> None:
    """The cheap scenarios' values are present and plausible even at smoke size."""
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--only",
            "S1,S6,S7",
            "--out",
            str(out),
            "--logs",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((out / "latest.json").read_text())
    assert set(results) == {"S1", "S6", "S7", "meta"}
    s1 = results["S1"]["metrics"]
    # Through the scheduler is two hops: it cannot be faster than one.
    assert s1["p50_via_scheduler_ms"] > s1["p50_direct_ms"] > 0
    s6 = results["S6"]
    # The mesh routes the simple steps to the small tier: 6 of the 7 subtasks.
    assert s6["metrics"]["mesh_subtasks_on_small_tier"] == pytest.approx(6 / 7, abs=0.01)
    assert s6["metrics"]["failed_requests"] == 0
    assert 0 < s6["targets"]["cost_ratio"]["value"] < 1
    s7 = results["S7"]["metrics"]
    # Each step sleeps the latency the client drew, so no request beats its slowest step.
    assert s7["failed_requests"] == 0 and s7["requests"] > 0
    assert s7["excess_p50_ms"] > 0 and s7["subtask_excess_p50_ms"] > 0
    assert s7["p50_ms"] > s7["ideal_p50_ms"] > 0
