"""A worker's place in the mesh: Register, then one Heartbeat stream kept open.

The stream carries the worker's health up and directives down; when it is
lost, or the scheduler says it no longer knows the worker, the worker
registers again. What is heard on these calls also feeds the worker's
`SchedulerLink`, which tells a live scheduler from a gone one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
from grpc import aio

from agentmesh.agents.link import SchedulerLink
from agentmesh.certfiles import RenewingChannel
from agentmesh.server.skills import SKILLS, Skill
from agentmesh.server.skillspecs import skill_to_proto
from agentmesh.tls import TlsConfig, scheduler_name
from agentmesh.v1 import scheduler_pb2, scheduler_pb2_grpc, worker_pb2

log = logging.getLogger(__name__)

#: The shortest time between two beats, as a share of the heartbeat interval: the
#: scheduler's own bound (agentmesh.scheduler.beats.MIN_GAP), which the agents cannot import.
MIN_GAP = 0.1


def skill_specs(
    info: worker_pb2.WorkerInfo, skills: Mapping[str, Skill] = SKILLS
) -> list[worker_pb2.SkillSpec]:
    """The contracts of the skills a worker offers, sent with its registration: `skills`
    are the worker's own catalogue (`Worker.skills`: the built-in skills and its own)."""
    return [skill_to_proto(skills[name]) for name in info.capabilities if name in skills]


class Membership:
    """Registers with the scheduler and beats until `stop()`."""

    def __init__(
        self,
        scheduler: str,
        info: Callable[[], worker_pb2.WorkerInfo],
        health: Callable[[], worker_pb2.WorkerHealth],
        skills: Callable[[], Mapping[str, Skill]] = lambda: SKILLS,
        tls: TlsConfig | None = None,
    ) -> None:
        """`info` and `health` are read afresh for each Register call and each beat;
        `skills` gives the contracts of the skills `info` names, for Register. With `tls`
        on, the worker presents its certificate and accepts only the scheduler's
        (`scheduler.<domain>`), whatever address it dials; after its certificate files
        are renewed, its next Register and Heartbeat stream go over a new channel with the
        new certificate (the stream open at the time stays on its connection)."""
        self.scheduler = scheduler
        self._tls = tls
        self.heartbeat_interval = 1.0
        """Seconds between beats; the scheduler's answer sets it."""
        self.registered = asyncio.Event()
        self._info = info
        self._health = health
        self._skills = skills
        self._wake = asyncio.Event()  # send a beat now, without waiting for the interval
        self.link = SchedulerLink(self._wake.set)
        self._stop = asyncio.Event()
        self._channels: RenewingChannel[scheduler_pb2_grpc.SchedulerServiceAsyncStub] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Register and keep beating, in the background."""
        tls = self._tls
        name = scheduler_name(tls.domain) if tls is not None else ""
        self._channels = RenewingChannel(self.scheduler, tls, _stub, server_name=name)
        self._task = asyncio.create_task(self._forever(), name="heartbeats")

    def beat_now(self) -> None:
        """Send a beat without waiting for the interval (such as "draining")."""
        self._wake.set()

    async def stop(self, timeout: float = 2.0) -> None:
        """Send a last beat, close the stream (the scheduler removes the worker), stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def close(self) -> None:
        if self._channels is not None:
            await self._channels.close()

    async def _register(
        self, channels: RenewingChannel[scheduler_pb2_grpc.SchedulerServiceAsyncStub]
    ) -> None:
        """Register, retrying with backoff until the scheduler answers."""
        delay = 0.1
        while True:
            tick = self.link.sent()
            info = self._info()
            try:
                with channels.hold() as stub:
                    response = await stub.Register(
                        scheduler_pb2.RegisterRequest(
                            worker=info, skills=skill_specs(info, self._skills())
                        ),
                        timeout=5.0,
                    )
            except grpc.RpcError as error:
                self.link.lost()
                channels.renew(force=True)  # a refused handshake: perhaps a renewed certificate
                # A refusal (a contract that conflicts with another worker's, a bad spec) is
                # the operator's to fix: say what the scheduler said, and keep trying.
                log.warning(
                    "cannot register with the scheduler; retrying",
                    extra={
                        "scheduler": self.scheduler,
                        "error": str(error.code()),
                        "detail": _details(error),
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.link.answered(tick)
            self.heartbeat_interval = response.heartbeat_interval.ToTimedelta().total_seconds()
            self.registered.set()
            log.info("registered", extra={"worker_id": info.worker_id, "address": info.address})
            return

    async def _beats(self, sent: deque[int]) -> AsyncIterator[scheduler_pb2.HeartbeatRequest]:
        """Beats for one stream; `sent` gets each one's tick, for its answer to match."""
        worker_id = self._info().worker_id
        loop = asyncio.get_running_loop()
        while True:
            sent.append(self.link.sent())
            yield scheduler_pb2.HeartbeatRequest(worker_id=worker_id, health=self._health())
            last = loop.time()
            if self._stop.is_set():
                return
            try:
                await asyncio.wait_for(self._wake.wait(), self.heartbeat_interval)
            except TimeoutError:
                pass
            # Never sooner than MIN_GAP of the interval after the last beat (but the last
            # one, on stop): the scheduler coalesces what comes faster, and refuses a flood.
            gap = last + MIN_GAP * self.heartbeat_interval - loop.time()
            if gap > 0 and not self._stop.is_set():
                await asyncio.sleep(gap)
            self._wake.clear()

    async def _forever(self) -> None:
        """Keep one Heartbeat stream open, registering again whenever it is lost."""
        channels = self._channels
        assert channels is not None
        while not self._stop.is_set():
            await self._register(channels)
            sent: deque[int] = deque()
            stub, release = channels.acquire()
            call = stub.Heartbeat(self._beats(sent))
            try:
                async for reply in call:
                    # The scheduler answers each beat, in order.
                    self.link.answered(sent.popleft() if sent else 0)
                    if reply.directive == scheduler_pb2.HEARTBEAT_DIRECTIVE_REGISTER:
                        break
                    self.heartbeat_interval = reply.heartbeat_interval.ToTimedelta().total_seconds()
                else:
                    self.link.lost()  # the scheduler ended the stream
            except grpc.RpcError as error:
                self.link.lost()
                channels.renew(force=True)  # the next stream is a new handshake perhaps
                log.warning(
                    "heartbeat stream lost; registering again",
                    extra={"error": str(error.code())},
                )
                await asyncio.sleep(0.2)
            finally:
                call.cancel()  # after a REGISTER directive, the old stream says nothing more
                release()


def _stub(channel: aio.Channel) -> scheduler_pb2_grpc.SchedulerServiceAsyncStub:
    return scheduler_pb2_grpc.SchedulerServiceStub(channel)


def _details(error: grpc.RpcError) -> str:
    """The status message of a failed call ("" when the error carries none)."""
    details = getattr(error, "details", None)
    return str(details() or "") if callable(details) else ""
