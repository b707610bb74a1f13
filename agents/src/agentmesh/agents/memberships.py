"""A worker registered with several schedulers: the replicas sharing one PostgreSQL store.

Each replica dispatches only to the workers registered with it, and a
replica that takes over another's requests needs workers at once: so a
worker registers with every replica (AGENTMESH_SCHEDULER names them, comma-
separated) and keeps one Heartbeat stream to each, through one `Membership`
per scheduler. Its capacity is declared to each; it bounds its own
concurrency, and the replicas share its slots through their latency and
in-flight estimates fed by its health reports (docs/postgresql.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agentmesh.agents.membership import Membership


def scheduler_addresses(setting: str) -> list[str]:
    """The schedulers AGENTMESH_SCHEDULER names: host:port, comma-separated."""
    return [address.strip() for address in setting.split(",") if address.strip()]


class Links:
    """Whether the schedulers are alive, as a cancelled call asks: all of them answer."""

    def __init__(self, members: Sequence[Membership]) -> None:
        self._members = members

    async def alive(self, timeout: float) -> bool:
        """True when every scheduler answers a beat sent from now. A call cancelled while
        one is gone may be that one's: the subtask runs on, its result kept for a retry."""
        answers = await asyncio.gather(*(m.link.alive(timeout) for m in self._members))
        return all(answers)


class Memberships:
    """One `Membership` per scheduler, used as one."""

    def __init__(self, members: Sequence[Membership]) -> None:
        if not members:
            raise ValueError("AGENTMESH_SCHEDULER names no scheduler")
        self.members = list(members)
        self.link = Links(self.members)
        self.registered = asyncio.Event()
        """Set once registered with every scheduler."""
        self._waiting: asyncio.Task[None] | None = None

    @property
    def heartbeat_interval(self) -> float:
        return min(m.heartbeat_interval for m in self.members)

    def start(self) -> None:
        for member in self.members:
            member.start()
        self._waiting = asyncio.create_task(self._all_registered(), name="registered")

    async def _all_registered(self) -> None:
        await asyncio.gather(*(m.registered.wait() for m in self.members))
        self.registered.set()

    def beat_now(self) -> None:
        for member in self.members:
            member.beat_now()

    async def stop(self, timeout: float = 2.0) -> None:
        await asyncio.gather(*(m.stop(timeout) for m in self.members))
        if self._waiting is not None:
            self._waiting.cancel()

    async def close(self) -> None:
        await asyncio.gather(*(m.close() for m in self.members))
