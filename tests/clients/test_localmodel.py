"""How `agentmesh run --backend local` shares the model server's slots among its workers."""

from __future__ import annotations

import pytest

from agentmesh import localmodel


@pytest.mark.parametrize(
    ("slots", "workers", "shares"),
    [(3, 3, [1, 1, 1]), (2, 1, [2]), (5, 3, [2, 2, 1]), (4, 2, [2, 2])],
)
def test_workers_share_the_slots_exactly(slots: int, workers: int, shares: list[int]) -> None:
    assert localmodel.slot_shares(slots, workers) == shares
    assert sum(shares) == slots and min(shares) >= 1


def test_fewer_slots_than_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="one each"):
        localmodel.slot_shares(2, 3)


def test_the_supervised_server_gets_its_slot_count() -> None:
    child = localmodel.child(8089, parallel=3)
    assert child.args[child.args.index("--parallel") + 1] == "3"
    assert localmodel.SCHEDULER_ENV["AGENTMESH_ATTEMPT_TIMEOUT"]
