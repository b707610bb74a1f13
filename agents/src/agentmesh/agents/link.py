"""What a worker hears from the scheduler, to tell why an Execute call was cancelled.

gRPC gives a server no reason for a cancellation. The scheduler cancels an
attempt on purpose (the request was cancelled, a hedge won, the worker was
evicted): the work must stop. But a scheduler that dies, or is killed,
cancels every call on its connection the same way, and then the work should
finish and be stored, so that the restarted scheduler's repeat is answered
from the store instead of calling the model again.

`SchedulerLink` follows the Register and Heartbeat calls. `alive()` asks
the question after a cancellation: it wakes the Heartbeat stream to send a
beat now, and answers True when the scheduler answers a beat (or a
Register) sent after the question was asked, False when the stream or a
Register fails first, was already down, or nothing is heard in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SchedulerLink:
    """The state of the worker's calls to the scheduler, on a logical clock.

    Every beat sent and every Register call started takes the next tick;
    an answer records the tick of what it answers, a failure the tick it
    was seen at. Comparing ticks tells what happened after a question was
    asked, whatever the order in which the event loop saw the events.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        """`wake` makes the Heartbeat stream send a beat now."""
        self._wake = wake
        self._tick = 0
        self._answered = 0
        """Tick of the latest beat or Register call the scheduler answered."""
        self._lost = 0
        """Tick at which the latest failure of a call to the scheduler was seen."""
        self._down = True
        """No answer since the latest failure (or since the start)."""
        self._changed = asyncio.Event()

    @property
    def up(self) -> bool:
        """Whether the scheduler answered since the last failure."""
        return not self._down

    def sent(self) -> int:
        """A beat is sent or a Register call starts: its tick, to pass to `answered`."""
        self._tick += 1
        return self._tick

    def answered(self, tick: int) -> None:
        """The scheduler answered the beat or Register call of this tick."""
        self._answered = max(self._answered, tick)
        self._down = False
        self._notify()

    def lost(self) -> None:
        """A Heartbeat stream or a Register call failed: the scheduler may be gone."""
        self._tick += 1
        self._lost = self._tick
        self._down = True
        self._notify()

    async def alive(self, timeout: float) -> bool:
        """Whether the scheduler answers now: True only on an answer to a beat sent from now."""
        if self._down:
            return False
        asked = self._tick
        self._wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._answered > asked:
                return True
            if self._lost > asked:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
