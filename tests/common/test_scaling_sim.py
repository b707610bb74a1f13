"""The 1,000× plan's simulation (bench/scaling_sim.py, docs/scaling.md) keeps its shape."""

from __future__ import annotations

from bench import scaling_sim


def test_the_workers_run_out_first_and_a_fleet_sized_for_bursts_keeps_up() -> None:
    report = scaling_sim.run()
    assert report["subtasks_per_day"] == 70_000_000
    order = report["today_saturates_at_x_reference"]
    assert isinstance(order, dict)
    assert order["workers"] < order["replicas"] < order["database"]
    for name in ("sized_for_peak_hour", "sized_for_bursts"):
        assert isinstance(report[name], dict)
    bursts = report["sized_for_bursts"]
    assert isinstance(bursts, dict)
    assert all(bursts[part]["longest_wait_s"] == 0 for part in ("replicas", "database", "workers"))


def test_a_fluid_queue_waits_only_while_arrivals_exceed_capacity() -> None:
    shape = scaling_sim.simulate([1.0, 3.0, 1.0, 1.0], capacity=2.0)
    assert shape["peak_use"] == 1.5
    assert shape["most_waiting"] == 60.0  # one minute at one subtask/s over capacity
    assert shape["longest_wait_s"] == 30.0
