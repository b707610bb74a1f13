import random
from collections import Counter

import pytest

from agentmesh.scheduler.policies import (
    LatencyWeighted,
    PowerOfTwoChoices,
    RoundRobin,
    make_policy,
)
from agentmesh.scheduler.registry import HealthReport, Registry, WorkerRecord, WorkerSpec


def workers(n: int, capacity: int = 4) -> list[WorkerRecord]:
    registry = Registry(initial_latency=0.05, latency_decay=10.0, error_decay=30.0)
    return [
        registry.register(WorkerSpec(f"w{i}", f"127.0.0.1:{i}", frozenset({"x"}), capacity), 0.0)
        for i in range(n)
    ]


@pytest.mark.parametrize("policy_class", [RoundRobin, PowerOfTwoChoices, LatencyWeighted])
def test_single_candidate_is_picked(policy_class: type) -> None:
    (only,) = workers(1)
    assert policy_class(random.Random(1)).pick([only], 0.0) is only


def test_round_robin_cycles() -> None:
    ws = workers(3)
    policy = RoundRobin(random.Random(1))
    picks = [policy.pick(ws, 0.0).worker_id for _ in range(6)]
    assert Counter(picks) == {"w0": 2, "w1": 2, "w2": 2}
    assert picks[:3] == picks[3:]


def test_p2c_prefers_the_less_loaded_of_two() -> None:
    ws = workers(2)
    ws[0].in_flight = 3
    policy = PowerOfTwoChoices(random.Random(7))
    assert all(policy.pick(ws, 0.0) is ws[1] for _ in range(20))


def test_latency_weighted_avoids_the_slow_worker() -> None:
    ws = workers(3)
    for w in ws:
        w.latency.observe(0.010, 1.0)
    ws[2].latency.observe(0.200, 1.0)  # peak-EWMA jumps to a slow observation at once
    policy = LatencyWeighted(random.Random(3))
    picks = Counter(policy.pick(ws, 1.0).worker_id for _ in range(100))
    assert picks["w2"] == 0
    assert picks["w0"] > 20 and picks["w1"] > 20


def test_latency_weighted_prefers_the_less_loaded_of_equals() -> None:
    ws = workers(2)
    for w in ws:
        w.latency.observe(0.010, 1.0)
    ws[0].in_flight = 2
    assert LatencyWeighted(random.Random(1)).pick(ws, 1.0) is ws[1]


def test_latency_weighted_keeps_a_free_slot_of_a_busy_fast_worker_over_a_slow_idle_one() -> None:
    fast, slow = workers(2)
    fast.latency.observe(0.010, 1.0)
    slow.latency.observe(0.100, 1.0)  # peak-EWMA: 100 ms at once; the fast one decays slowly
    fast.in_flight = 3  # one slot left: it still finishes sooner than the slow worker
    assert LatencyWeighted(random.Random(1)).pick([fast, slow], 1.0) is fast


def test_latency_weighted_penalises_recent_errors() -> None:
    ws = workers(2)
    for _ in range(5):
        ws[0].errors.observe(True, 1.0)
    assert LatencyWeighted(random.Random(1)).pick(ws, 1.0) is ws[1]


def test_latency_weighted_trusts_a_worse_self_report() -> None:
    ws = workers(2)
    ws[0].health = HealthReport(latency=0.5)
    assert LatencyWeighted(random.Random(1)).pick(ws, 1.0) is ws[1]


def test_make_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="latency_weighted"):
        make_policy("fastest", random.Random(1))


def test_latency_weighted_waits_for_a_fast_worker_rather_than_use_a_slow_one() -> None:
    fast, slow = workers(2, capacity=4)
    fast.latency.observe(0.010, 1000.0)  # the initial estimate long forgotten
    slow.latency.observe(0.200, 1000.0)
    fast.in_flight = 4  # full: it frees a slot about every 10 ms / 4
    policy = LatencyWeighted(random.Random(1))
    assert policy.worth_waiting(slow, [fast], 1, 1000.0)
    assert not policy.worth_waiting(fast, [slow], 1, 1000.0)
    assert not policy.worth_waiting(slow, [], 1, 1.0)  # nothing to wait for
    assert not RoundRobin(random.Random(1)).worth_waiting(slow, [fast], 1, 1000.0)


def test_latency_weighted_uses_the_slow_worker_once_the_queue_is_deep() -> None:
    fast, slow = workers(2, capacity=4)
    fast.latency.observe(0.010, 1000.0)  # the initial estimate long forgotten
    slow.latency.observe(0.200, 1000.0)
    fast.in_flight = 4
    policy = LatencyWeighted(random.Random(1))
    # The fast worker works off 400 subtasks a second: the 60th queued one would
    # finish after 160 ms there, the 100th after 260 ms, later than the slow worker.
    assert policy.worth_waiting(slow, [fast], 60, 1000.0)
    assert not policy.worth_waiting(slow, [fast], 100, 1000.0)
