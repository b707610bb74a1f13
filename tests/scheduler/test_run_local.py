"""How `agentmesh run --backend local` shares the model server's slots among its workers."""

from __future__ import annotations

import pytest

from agentmesh.agents.backends import make_backend
from agentmesh.agents.localmodel import MODEL_ALIAS
from agentmesh.scheduler import run


@pytest.mark.parametrize(
    ("slots", "workers", "shares"),
    [(3, 3, [1, 1, 1]), (2, 1, [2]), (5, 3, [2, 2, 1]), (4, 2, [2, 2])],
)
def test_workers_share_the_slots_exactly(slots: int, workers: int, shares: list[int]) -> None:
    assert run.slot_shares(slots, workers) == shares
    assert sum(shares) == slots and min(shares) >= 1


def test_fewer_slots_than_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="one each"):
        run.slot_shares(2, 3)


def test_the_local_backend_is_the_openai_one_on_the_local_server() -> None:
    backend = make_backend(
        "local",
        {"AGENTMESH_MODEL_BASE_URL": "http://127.0.0.1:9/v1", "AGENTMESH_MODEL_CONCURRENCY": "2"},
    )
    assert backend.model == MODEL_ALIAS
    # What the environment sets wins over the local defaults.
    backend = make_backend(
        "local",
        {
            "AGENTMESH_MODEL_BASE_URL": "http://127.0.0.1:9/v1",
            "AGENTMESH_MODEL_CONCURRENCY": "2",
            "AGENTMESH_MODEL": "other",
        },
    )
    assert backend.model == "other"
