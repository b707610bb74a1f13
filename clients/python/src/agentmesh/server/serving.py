"""What running a server looks like, for the scheduler and the worker alike."""

from __future__ import annotations

import asyncio
import signal
from types import TracebackType
from typing import Self


class Serving:
    """`run()` until SIGTERM or SIGINT, or `async with`, around a server's own `start()` and
    `shutdown(grace)`; `shutdown` sets `_stopped` once everything is closed."""

    _stopped: asyncio.Event
    _shutting_down: asyncio.Future[None] | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain and stop, giving in-flight work `grace` seconds (None: the server's own)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain. An address that cannot be bound
        raises OSError, once what had started is stopped."""
        try:
            await self.start()
        except OSError:
            await self.shutdown(grace=0)
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown_soon)
        await self._stopped.wait()

    def _shutdown_soon(self) -> None:
        # Kept: a task nobody references may be collected before it is done.
        self._shutting_down = asyncio.ensure_future(self.shutdown())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(grace=1.0)
