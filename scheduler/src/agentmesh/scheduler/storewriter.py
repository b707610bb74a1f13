"""The store's writer: one thread that commits queued writes in groups, and keeps trying.

The event loop gathers the statements of one loop turn in a list and hands
the list over (one queue put) at the end of the turn; where it must not
acknowledge anything before it is durable, it waits for a commit marker.
The writer takes what is queued, commits it in one transaction (group
commit: a marker commits at once, other writes wait a few milliseconds for
company; runs of the same statement go to the database as one
executemany), then releases the markers it committed.

The writer knows no database: a `Sink` (one per kind of store, see
store.py and pgstore.py) commits a batch in one transaction, checks the
store while nothing is written, and says what to do when it fails.

A commit that fails (disk full, a file size limit, a read-only file, the
file deleted or replaced under the scheduler, a database server that is
gone or refuses writes) is neither dropped nor acknowledged: the writer
keeps the batch and retries it with backoff, adding what is queued
meanwhile, reports the store down once (one log line, the observer's
`store_state(False)`), and reports it up again when a commit succeeds, or
when the sink's check passes while nothing is written. Markers wait for
that commit; their waiters give up at their own deadlines.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: One SQL statement and its parameters.
Statement = tuple[str, tuple[Any, ...]]

_STOP = object()


class StoreObserver(Protocol):
    """Told by the writer thread (not the event loop) how the store fares."""

    def store_write_failed(self) -> None:
        """A commit failed (each retry counts)."""

    def store_state(self, up: bool) -> None:
        """The store went down (cannot commit) or came back up."""


class Sink(Protocol):
    """A store's database as the writer thread uses it (from that thread only)."""

    #: The store as log lines name it (a file, or a database URL without its password).
    where: str

    def commit(self, statements: list[Statement]) -> None:
        """Commit `statements` in one transaction, in order, or raise with none committed
        (or, where the database cannot tell, with all of them: every statement the stores
        queue can be applied twice)."""

    def check(self) -> None:
        """With nothing to write: raise if the store could not commit now."""

    def advice(self, error: BaseException) -> str:
        """What an operator does about `error`, for the one log line of an outage."""


def runs(statements: Iterable[Statement]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive statements with the same SQL, as one (sql, [parameters]) for executemany."""
    for sql, run in itertools.groupby(statements, key=operator.itemgetter(0)):
        yield sql, [parameters for _, parameters in run]


class _Marker:
    """Calls `done` once everything queued before it is committed."""

    def __init__(self, done: Callable[[], None]) -> None:
        self.done = done


class GroupWriter:
    """Commits statements to `sink` from one thread; `up` says whether commits succeed."""

    def __init__(
        self,
        sink: Sink,
        *,
        flush_interval: float = 0.005,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        check_interval: float = 1.0,
        observer: StoreObserver | None = None,
    ) -> None:
        self.sink = sink
        self.path = sink.where
        self.observer = observer
        #: False while commits fail; new work is refused meanwhile.
        self.up = True
        #: Why the store is down, for log lines and refusals.
        self.problem = ""
        self._queue: queue.Queue[Any] = queue.Queue()
        #: Statements queued in this loop turn, not yet handed to the writer.
        self._turn: list[Statement] = []
        #: The loop and the waiters of this turn's commit, not yet marked (`committed`).
        self._waiting: tuple[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] | None = None
        self._flush_interval = flush_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._check_interval = check_interval
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._write_forever, name="store", daemon=True)
        self._thread.start()

    def put(self, statement: Statement) -> None:
        """Queue a statement: handed to the writer at the end of this loop turn (at once
        when called outside an event loop)."""
        self._turn.append(statement)
        if len(self._turn) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._hand_over)
            except RuntimeError:
                self._hand_over()

    def _hand_over(self) -> None:
        if self._turn:
            turn, self._turn = self._turn, []
            self._queue.put(turn)

    async def committed(self, timeout: float) -> bool:
        """Wait until everything queued so far is committed; False when `timeout` passes first.

        The waiters of one loop turn share one marker, queued at the end of the turn after
        its writes, and one wake-up of the loop when it is committed: with a store several
        schedulers share, every attempt waits for a commit before its worker is called.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._waiting is None or self._waiting[0] is not loop:
            self._waiting = (loop, [])
            loop.call_soon(self._mark)
        self._waiting[1].append(future)
        try:
            await asyncio.wait_for(future, max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    def _mark(self) -> None:
        """Queue the marker of this loop turn's waiters, after the turn's writes."""
        if self._waiting is None:
            return
        (loop, waiters), self._waiting = self._waiting, None

        def done() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, waiters)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        self._hand_over()
        self._queue.put(_Marker(done))

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is committed; False on timeout."""
        event = threading.Event()
        self._hand_over()
        self._queue.put(_Marker(event.set))
        return event.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued (one try if the store is down) and stop the thread."""
        self._hand_over()
        self._queue.put(_STOP)
        self._wake.set()
        self._thread.join(timeout)

    # -- the thread ------------------------------------------------------------------

    def _write_forever(self) -> None:
        pending: list[Any] = []
        delay = self._retry_initial
        while True:
            if not pending:
                try:
                    pending.append(self._queue.get(timeout=self._check_interval))
                except queue.Empty:
                    self._check_idle()
                    continue
            self._gather(pending)
            stopping = any(item is _STOP for item in pending)
            try:
                self._commit(pending)
            except Exception as error:  # whatever failed, the batch is kept and retried
                self._failed(error)
                if stopping:
                    writes = sum(len(item) for item in pending if isinstance(item, list))
                    log.error(
                        "request store closed with writes it could not commit",
                        extra={"store": self.path, "writes": writes},
                    )
                    return
                self._wake.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._recovered()
            delay = self._retry_initial
            for item in pending:
                if isinstance(item, _Marker):
                    item.done()
            pending = []
            if stopping:
                return

    def _gather(self, pending: list[Any]) -> None:
        """Add what is queued to `pending`; without a marker, wait briefly for more."""
        added = 0
        while added < 1000:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if any(isinstance(i, _Marker) or i is _STOP for i in pending):
                    return  # someone waits for this commit: do not delay it
                try:
                    item = self._queue.get(timeout=self._flush_interval)
                except queue.Empty:
                    return
            pending.append(item)
            added += 1

    def _commit(self, pending: list[Any]) -> None:
        self.sink.commit([st for item in pending if isinstance(item, list) for st in item])

    def _check_idle(self) -> None:
        """With nothing to write, notice a store that went away, or one that came back."""
        try:
            self.sink.check()
        except Exception as error:
            self._failed(error)
            return
        if not self.up:
            self._recovered()

    def _failed(self, error: BaseException) -> None:
        if self.observer is not None:
            self.observer.store_write_failed()
        # The latest cause: a store down for one reason may stay down for another (a
        # database server back, but read-only), and refusals say what holds now.
        self.problem = f"{type(error).__name__}: {error}"
        if not self.up:
            return
        self.up = False
        advice = self.sink.advice(error)
        log.error(
            f"the request store {self.path} (AGENTMESH_STORE) cannot write ({self.problem}): "
            f"new requests are refused with UNAVAILABLE until it can; {advice}"
        )
        if self.observer is not None:
            self.observer.store_state(False)

    def _recovered(self) -> None:
        if self.up:
            return
        self.up = True
        log.warning(f"the request store {self.path} can write again: serving new requests")
        self.problem = ""
        if self.observer is not None:
            self.observer.store_state(True)


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a waiter that timed out has cancelled its own
            future.set_result(None)
