from agentmesh.scheduler.stats import Finished, RequestWindow, percentile


def finished(i: int, at: float, state: str = "SUCCEEDED", duration: float = 1.0) -> Finished:
    return Finished(f"r{i}", "support_ticket", state, duration, at, 1e9 + at)


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([], 0.5) == 0.0


def test_window_counts_rate_and_forgets_old_requests() -> None:
    window = RequestWindow(window=10.0)
    window.record(finished(0, at=0.0, duration=9.0))
    for i in range(1, 6):
        window.record(finished(i, at=20.0 + i, duration=float(i)))
    window.record(finished(6, at=26.0, state="FAILED", duration=6.0))
    summary = window.summary(now=27.0)
    assert summary.counts == {"SUCCEEDED": 5, "FAILED": 1}
    assert summary.rate == 0.6
    assert summary.p50 == 3.0 and summary.p99 == 6.0  # the 9 s request left the window


def test_recent_is_newest_first() -> None:
    window = RequestWindow()
    for i in range(5):
        window.record(finished(i, at=float(i)))
    assert [f.request_id for f in window.recent(3)] == ["r4", "r3", "r2"]
    assert len(window.recent(50)) == 5
