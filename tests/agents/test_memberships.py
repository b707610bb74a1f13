"""A worker registered with several schedulers (the replicas of one store)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from agentmesh.agents.memberships import Links, Memberships, scheduler_addresses


def test_the_setting_names_one_scheduler_or_several() -> None:
    assert scheduler_addresses("127.0.0.1:50051") == ["127.0.0.1:50051"]
    assert scheduler_addresses(" a:1, b:2 ,,") == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="names no scheduler"):
        Memberships([])


def member(alive: bool, interval: float = 1.0) -> Any:
    async def answer(timeout: float) -> bool:
        return alive

    return SimpleNamespace(
        link=SimpleNamespace(alive=answer), heartbeat_interval=interval, registered=asyncio.Event()
    )


async def test_a_cancelled_call_is_trusted_only_while_every_scheduler_answers() -> None:
    # One replica gone: the cancelled call may be its own, so the subtask runs on.
    assert await Links([member(True), member(True)]).alive(1.0)
    assert not await Links([member(True), member(False)]).alive(1.0)


async def test_registered_once_registered_with_every_scheduler() -> None:
    members = [member(True, 1.0), member(True, 0.5)]
    group = Memberships(members)
    for m in members:
        m.start = lambda: None
    group.start()
    members[0].registered.set()
    await asyncio.sleep(0)
    assert not group.registered.is_set()
    members[1].registered.set()
    await asyncio.wait_for(group.registered.wait(), 1)
    assert group.heartbeat_interval == 0.5
