import random

from agentmesh.scheduler.retry import RetryPolicy


def test_full_jitter_within_growing_bounds() -> None:
    policy = RetryPolicy()
    rng = random.Random(42)
    first = [policy.backoff(1, rng) for _ in range(500)]
    second = [policy.backoff(2, rng) for _ in range(500)]
    assert 0 <= min(first) and max(first) <= 0.5
    assert 0 <= min(second) and max(second) <= 2.0
    assert max(second) > 1.0  # the bound really grew to about 2 s
    assert len(set(first)) > 400  # jittered, not a fixed delay


def test_bound_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=1.0, multiplier=10.0, max_backoff=3.0)
    rng = random.Random(1)
    assert max(policy.backoff(5, rng) for _ in range(200)) <= 3.0
