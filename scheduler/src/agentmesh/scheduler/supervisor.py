"""`agentmesh run`: the scheduler and built-in workers as child processes.

Each child is a real process (`python -m agentmesh scheduler|worker`), so
the local mesh fails the way a deployed one does. A child that exits on its
own is restarted after a growing delay; SIGTERM or SIGINT to the
supervisor drains every child (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Child:
    name: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    #: The module run as `python -m MODULE ARGS`.
    module: str = "agentmesh"


class Supervisor:
    def __init__(self, children: list[Child], *, grace: float = 15.0) -> None:
        self.children = children
        self.grace = grace
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._redefined: dict[str, Child] = {}
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            child.module,
            *child.args,
            env={**os.environ, **dict(child.env)},
        )
        self._processes[child.name] = process
        log.info("started", extra={"child": child.name, "pid": process.pid})
        return process

    async def _keep(self, child: Child, first: asyncio.subprocess.Process) -> None:
        """Restart the child whenever it exits before the supervisor stops."""
        process, delay = first, 0.5
        while True:
            code = await process.wait()
            if self._stopping.is_set():
                return
            log.warning(
                "exited; restarting", extra={"child": child.name, "code": code, "delay": delay}
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            delay = min(delay * 2, 30.0)
            process = await self._spawn(self._redefined.get(child.name, child))

    async def start(self, child: Child) -> asyncio.Task[None]:
        process = await self._spawn(child)
        return asyncio.create_task(self._keep(child, process))

    def redefine(self, child: Child) -> None:
        """Restart the child of this name as `child` from now on: a child that was given
        port 0 comes back on the port it got, where the others know to find it."""
        self._redefined[child.name] = child

    async def stop(self) -> None:
        """Drain every child: SIGTERM, then SIGKILL after the grace period."""
        self._stopping.set()
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), self.grace)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        self._stopped.set()

    def stop_on_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))

    async def wait_stopped(self) -> None:
        """Until `stop()` has ended every child."""
        await self._stopped.wait()
