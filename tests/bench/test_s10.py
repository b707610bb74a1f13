"""S10's simulation of a day: arrivals by the hour, a fixed fleet, and KEDA's loop on the
scheduler's backlog rule following the load up, back down, and to zero."""

from __future__ import annotations

import random

from bench.s10_autoscaling import DayModel, jobs_of, simulate, size_for_peak

#: One busy hour (09:00) in an otherwise empty day, and a light load.
QUIET = (0,) * 9 + (1,) + (0,) * 14
SEED = 7


def test_arrivals_follow_the_hourly_profile() -> None:
    model = DayModel(requests=5_000)
    times = model.arrivals(random.Random(1))
    assert abs(len(times) - 5_000) < 250
    by_hour = [0] * 24
    for t in times:
        by_hour[int(t // 3600)] += 1
    assert max(range(24), key=by_hour.__getitem__) == model.peak_hour == 9
    assert by_hour[3] < by_hour[9] / 8


def test_a_fixed_fleet_keeps_its_pods_all_day() -> None:
    model = DayModel(requests=200, hourly=QUIET)
    jobs = jobs_of(model, SEED)
    result = simulate(model, jobs, SEED, fixed=3)
    assert result.max_pods == 3
    assert result.worker_seconds == 3 * 86_400
    assert len(result.waits) == len(jobs)


def test_the_autoscaled_pool_grows_with_the_peak_and_comes_back_to_its_minimum() -> None:
    model = DayModel(requests=400, hourly=QUIET)
    jobs = jobs_of(model, SEED)
    pods, fixed = size_for_peak(model, jobs, SEED)
    scaled = simulate(model, jobs, SEED)
    assert pods > 1
    assert scaled.max_pods > 1  # up with the busy hour
    assert len(scaled.waits) == len(jobs)  # every subtask served
    # Back to one pod for the rest of the day: far fewer worker-hours than the fixed fleet.
    assert scaled.worker_seconds < fixed.worker_seconds / 4
    assert scaled.worker_seconds > 86_400  # never below its one pod


def test_a_pool_allowed_zero_sleeps_through_the_idle_hours_and_wakes_for_work() -> None:
    model = DayModel(requests=100, hourly=QUIET)
    jobs = jobs_of(model, SEED)
    at_one = simulate(model, jobs, SEED)
    from_zero = simulate(model, jobs, SEED, min_replicas=0)
    assert len(from_zero.waits) == len(jobs)
    # Its first subtask waited for a pod to start (30 s median), the others less.
    assert max(from_zero.waits) > 10.0
    # At zero for most of the 23 idle hours, which the pool at one pays for.
    assert from_zero.worker_seconds < at_one.worker_seconds - 20 * 3600
