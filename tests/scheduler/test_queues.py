import pytest

from agentmesh.errors import ResourceExhausted
from agentmesh.scheduler.queues import CRITICAL, HIGH, LOW, NORMAL, CapabilityQueue


def make(bound: int = 100, aging: float = 10.0) -> CapabilityQueue[str]:
    return CapabilityQueue("summarize", bound, aging)


def test_higher_priority_class_leaves_first() -> None:
    q = make()
    q.push("low", priority=LOW, deadline=10, now=0)
    q.push("critical", priority=CRITICAL, deadline=50, now=0)
    q.push("normal", priority=NORMAL, deadline=5, now=0)
    assert [q.pop(0), q.pop(0), q.pop(0)] == ["critical", "normal", "low"]
    assert q.pop(0) is None


def test_within_a_class_earliest_deadline_then_arrival() -> None:
    q = make()
    q.push("late", priority=HIGH, deadline=30, now=0)
    q.push("soon-first", priority=HIGH, deadline=10, now=0)
    q.push("soon-second", priority=HIGH, deadline=10, now=0)
    assert [q.pop(0), q.pop(0), q.pop(0)] == ["soon-first", "soon-second", "late"]


def test_waiting_entries_age_past_newer_higher_classes() -> None:
    q = make(aging=10.0)
    q.push("old-low", priority=LOW, deadline=1000, now=0)
    # Three classes of difference: after more than 30 s the low entry outranks critical work.
    q.push("new-critical", priority=CRITICAL, deadline=1000, now=25)
    assert q.pop(now=25) == "new-critical"
    q.push("newer-critical", priority=CRITICAL, deadline=1000, now=35)
    assert q.pop(now=35) == "old-low"


def test_bound_refuses_with_retry_delay() -> None:
    q = make(bound=2)
    q.push("a", priority=NORMAL, deadline=1, now=0)
    q.push("b", priority=NORMAL, deadline=1, now=0)
    with pytest.raises(ResourceExhausted) as refused:
        q.push("c", priority=NORMAL, deadline=1, now=0)
    assert refused.value.retry_after > 0
    assert "summarize" in refused.value.message


def test_removed_entries_are_skipped_and_free_room() -> None:
    q = make(bound=2)
    a = q.push("a", priority=NORMAL, deadline=1, now=0)
    q.push("b", priority=NORMAL, deadline=2, now=0)
    q.remove(a)
    q.remove(a)
    assert len(q) == 1
    q.push("c", priority=NORMAL, deadline=3, now=0)
    assert [q.pop(0), q.pop(0)] == ["b", "c"]


def test_oldest_age() -> None:
    q = make()
    assert q.oldest_age(5) == 0
    q.push("a", priority=LOW, deadline=1, now=1)
    q.push("b", priority=HIGH, deadline=1, now=3)
    assert q.oldest_age(5) == 4
