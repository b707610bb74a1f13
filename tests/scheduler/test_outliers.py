from agentmesh.scheduler.outliers import OutlierDetector, OutlierPolicy
from agentmesh.scheduler.registry import Registry, WorkerSpec


def mesh(n: int) -> tuple[Registry, OutlierDetector]:
    registry = Registry(initial_latency=0.05, latency_decay=10.0, error_decay=30.0)
    for i in range(n):
        registry.register(WorkerSpec(f"w{i}", "127.0.0.1:1", frozenset({"x"}), 1), 0.0)
    return registry, OutlierDetector(OutlierPolicy(error_ratio=2.0), registry)  # ratio off


def test_consecutive_failures_eject_with_a_growing_cool_down() -> None:
    registry, detector = mesh(4)
    worker = registry.get("w0")
    assert not any(detector.observe(worker, True, 1.0) for _ in range(4))
    assert detector.observe(worker, True, 1.0)
    assert worker.ejected_until == 11.0
    # Back after the cool-down; ejected again, for twice as long.
    assert [detector.observe(worker, True, 20.0) for _ in range(5)][-1]
    assert worker.ejected_until == 40.0


def test_a_success_resets_the_count() -> None:
    registry, detector = mesh(4)
    worker = registry.get("w0")
    for _ in range(4):
        detector.observe(worker, True, 1.0)
    detector.observe(worker, False, 1.0)
    assert not detector.observe(worker, True, 1.0)


def test_a_high_error_ratio_ejects_sooner() -> None:
    registry = Registry(initial_latency=0.05, latency_decay=10.0, error_decay=30.0)
    for i in range(2):
        registry.register(WorkerSpec(f"w{i}", "127.0.0.1:1", frozenset({"x"}), 1), 0.0)
    detector = OutlierDetector(OutlierPolicy(), registry)
    worker = registry.get("w0")
    for _ in range(10):
        worker.errors.observe(True, 1.0)
    assert not detector.observe(worker, True, 1.0)
    assert detector.observe(worker, True, 1.0)


def test_never_more_than_the_share_of_a_capability() -> None:
    registry, detector = mesh(2)
    first, second = registry.get("w0"), registry.get("w1")
    assert [detector.observe(first, True, 1.0) for _ in range(5)][-1]
    assert not any(detector.observe(second, True, 1.0) for _ in range(10))
    alone, solo = mesh(1)
    assert not any(solo.observe(alone.get("w0"), True, 1.0) for _ in range(10))
