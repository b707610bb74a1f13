"""`agentmesh top`: a live terminal view of a running mesh.

Two halves, kept apart so the view can be tested without a server:

- rendering (`render`, `render_unreachable`): pure functions from the
  scheduler's ListWorkers and GetStats answers (plus the time "now") to a
  rich renderable;
- polling (`Poller`, `watch`, `run_top`): calls the scheduler every
  interval, each call with a deadline, and hands the answers to the
  renderer. A failed poll is shown on screen and retried; it never ends
  the view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from google.protobuf import duration_pb2, timestamp_pb2
from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2

#: How many recent requests the view asks GetStats for (the server's default too).
RECENT_REQUESTS = 20

#: Seconds between polls when none is given (the command line's default too).
DEFAULT_INTERVAL = 1.0

#: Bounds of one poll's call deadline, in seconds: at least the interval, within these.
MIN_CALL_TIMEOUT = 1.0
MAX_CALL_TIMEOUT = 5.0

OUTCOME_STYLES = {
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "running": "cyan",
}
WORKER_STATE_STYLES = {"active": "green", "draining": "yellow"}


# -- formatting -------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """A short human duration: 4.2ms, 87ms, 1.25s, 2m05s, 1h03m."""
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _seconds(duration: duration_pb2.Duration) -> float:
    return float(duration.ToTimedelta().total_seconds())


def _ago(stamp: timestamp_pb2.Timestamp, now: datetime) -> str:
    """How long before `now` a timestamp was ("1.20s ago"), or "-" when it is unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return "-"
    age = (now - stamp.ToDatetime(tzinfo=UTC)).total_seconds()
    return f"{format_seconds(max(0.0, age))} ago"


def _enum_word(name: str, prefix: str) -> str:
    """REQUEST_STATE_SUCCEEDED -> succeeded."""
    return name.removeprefix(prefix).lower()


def worker_state(worker: scheduler_pb2.WorkerStatus) -> str:
    """The worker's state as one lower-case word (active, draining, unspecified)."""
    return _enum_word(scheduler_pb2.WorkerState.Name(worker.state), "WORKER_STATE_")


def request_outcome(state: scheduler_pb2.RequestState.ValueType) -> str:
    """A request state as one lower-case word (succeeded, failed, ...)."""
    return _enum_word(scheduler_pb2.RequestState.Name(state), "REQUEST_STATE_")


def _error_rate_style(rate: float) -> str:
    if rate >= 0.5:
        return "bold red"
    return "yellow" if rate > 0 else ""


# -- rendering --------------------------------------------------------------------


def _table(title: str, *, expand: bool = False) -> Table:
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=expand)


def workers_table(workers: Sequence[scheduler_pb2.WorkerStatus], now: datetime) -> Table:
    """One row per worker: state, load, latency estimate, error rate, heartbeat age."""
    table = _table(f"workers ({len(workers)})", expand=True)
    table.add_column("worker", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("load", justify="right", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("beat", justify="right", no_wrap=True)
    # Wide enough for the longest name, so that names wrap between, never inside, words.
    longest = max((len(c) for w in workers for c in w.info.capabilities), default=0)
    table.add_column("capabilities", ratio=1, min_width=longest + 1)
    if not workers:
        table.add_row(Text("no workers registered", style="dim"))
    for w in sorted(workers, key=lambda w: w.info.worker_id):
        state = worker_state(w)
        table.add_row(
            w.info.worker_id,
            Text(state, style=WORKER_STATE_STYLES.get(state, "red")),
            f"{w.in_flight}/{w.info.capacity}",
            format_seconds(_seconds(w.latency_estimate)),
            Text(f"{w.error_rate:.1%}", style=_error_rate_style(w.error_rate)),
            _ago(w.last_heartbeat, now),
            ", ".join(w.info.capabilities),
        )
    return table


def queues_table(queues: Sequence[scheduler_pb2.QueueStats]) -> Table:
    """One row per capability queue: depth, the oldest waiting subtask's age, and the least
    slack of a waiting subtask (red when negative: expected to be late)."""
    table = _table("queues")
    table.add_column("capability", no_wrap=True)
    table.add_column("depth", justify="right", no_wrap=True)
    table.add_column("oldest", justify="right", no_wrap=True)
    table.add_column("slack", justify="right", no_wrap=True)
    if not queues:
        table.add_row(Text("no queues yet", style="dim"))
    for q in sorted(queues, key=lambda q: q.capability):
        oldest = format_seconds(_seconds(q.oldest_age)) if q.depth else "-"
        table.add_row(
            q.capability,
            Text(str(q.depth), style="bold" if q.depth else ""),
            oldest,
            _slack(q),
        )
    return table


def _slack(queue: scheduler_pb2.QueueStats) -> Text:
    """A queue's least slack, signed; "-" when it has none (an empty queue)."""
    if not queue.HasField("least_slack"):
        return Text("-")
    slack = _seconds(queue.least_slack)
    if slack < 0:
        return Text(f"-{format_seconds(-slack)}", style="red")
    return Text(format_seconds(slack))


def requests_panel(stats: scheduler_pb2.GetStatsResponse) -> Panel:
    """Active requests, rate, latency percentiles and outcome counts over the window."""
    grid = Table.grid(padding=(0, 2))
    for _ in range(6):
        grid.add_column(no_wrap=True)
    grid.add_row(
        "active",
        Text(str(stats.active_requests), style="bold cyan"),
        "rate",
        f"{stats.requests_per_second:.2f}/s",
        "",
        "",
    )
    grid.add_row(
        "p50",
        format_seconds(_seconds(stats.latency_p50)),
        "p95",
        format_seconds(_seconds(stats.latency_p95)),
        "p99",
        format_seconds(_seconds(stats.latency_p99)),
    )
    grid.add_row(
        "succeeded",
        Text(str(stats.succeeded), style=OUTCOME_STYLES["succeeded"]),
        "failed",
        Text(str(stats.failed), style=OUTCOME_STYLES["failed"] if stats.failed else ""),
        "cancelled",
        Text(str(stats.cancelled), style=OUTCOME_STYLES["cancelled"] if stats.cancelled else ""),
    )
    window = format_seconds(_seconds(stats.window))
    return Panel(grid, title=f"requests (last {window})", title_align="left", expand=False)


def recent_table(recent: Sequence[scheduler_pb2.RequestSummary], now: datetime) -> Table:
    """The most recent finished requests, newest first, outcome coloured."""
    table = _table("recent requests")
    # Each tenant has its own request ids: with tenants, the same id may be listed twice.
    tenants = any(r.tenant for r in recent)
    if tenants:
        table.add_column("tenant", no_wrap=True)
    table.add_column("request", no_wrap=True)
    table.add_column("workflow", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", no_wrap=True)
    table.add_column("finished", justify="right", no_wrap=True)
    if not recent:
        table.add_row(Text("no finished requests yet", style="dim"))
    for r in recent:
        outcome = request_outcome(r.state)
        table.add_row(
            *((r.tenant,) if tenants else ()),
            r.request_id,
            r.workflow or "(plan)",
            Text(outcome, style=OUTCOME_STYLES.get(outcome, "")),
            format_seconds(_seconds(r.duration)),
            Text(r.error_code, style="red") if r.error_code else "",
            _ago(r.finished_at, now),
        )
    return table


def _header(target: str, workers: int, now: datetime) -> Text:
    header = Text.assemble(("agentmesh top", "bold"), f"  {target}" if target else "")
    header.append(f"  {workers} worker{'s' if workers != 1 else ''}")
    header.append(f"  {now.astimezone():%H:%M:%S}", style="dim")
    return header


def render(
    workers: Sequence[scheduler_pb2.WorkerStatus],
    stats: scheduler_pb2.GetStatsResponse,
    *,
    now: datetime,
    target: str = "",
) -> RenderableType:
    """The whole view of one poll: header, requests and queues, workers, recent requests."""
    return Group(
        _header(target, len(workers), now),
        # Side by side when the terminal is wide enough, else one above the other.
        Columns([requests_panel(stats), queues_table(stats.queues)], padding=(0, 4)),
        workers_table(workers, now),
        recent_table(stats.recent, now),
    )


def render_unreachable(
    target: str,
    error: AgentmeshError,
    *,
    retry_every: float | None = None,
    last: RenderableType | None = None,
) -> RenderableType:
    """A clear "cannot reach the scheduler" panel, above the last good view if any."""
    message = Text.assemble(
        ("Cannot reach the scheduler at ", "bold red"),
        (target, "bold"),
        "\n",
        f"{error.code_name}: {error.message}",
    )
    if retry_every is not None:
        message.append(f"\nRetrying every {format_seconds(retry_every)}; Ctrl-C to quit.", "dim")
    panel = Panel(message, title="scheduler unreachable", title_align="left", border_style="red")
    if last is None:
        return panel
    return Group(panel, Text("last view:", style="dim"), last)


# -- polling ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The scheduler's answers to one poll, and when they were taken."""

    workers: list[scheduler_pb2.WorkerStatus]
    stats: scheduler_pb2.GetStatsResponse
    taken_at: datetime


def call_timeout(interval: float) -> float:
    """One poll call's deadline: the interval, kept between 1s and 5s."""
    return min(max(interval, MIN_CALL_TIMEOUT), MAX_CALL_TIMEOUT)


class SchedulerClient(Protocol):
    """What the view needs of a scheduler client (`agentmesh.client.Client` has it)."""

    def list_workers(
        self, capability: str = "", *, timeout: float | None = None
    ) -> list[scheduler_pb2.WorkerStatus]: ...

    def get_stats(
        self, recent_requests: int = 0, *, timeout: float | None = None
    ) -> scheduler_pb2.GetStatsResponse: ...

    def close(self) -> None: ...


class Poller:
    """Fetches snapshots from one scheduler; after a failure it reconnects afresh.

    A fresh channel per failure matters: a gRPC channel that failed to
    connect backs off exponentially (up to two minutes), so a reused one
    would notice a restarted scheduler only long after it is back.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float,
        client_factory: Callable[[str], SchedulerClient] = Client,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._client_factory = client_factory
        self._clock = clock
        self._client: SchedulerClient | None = None

    def poll(self) -> Snapshot:
        """Both answers, each call with the deadline; raises AgentmeshError on failure."""
        if self._client is None:
            self._client = self._client_factory(self.target)
        try:
            workers = self._client.list_workers(timeout=self.timeout)
            stats = self._client.get_stats(RECENT_REQUESTS, timeout=self.timeout)
        except AgentmeshError:
            self.close()
            raise
        return Snapshot(workers, stats, self._clock())

    def close(self) -> None:
        """Close the channel, if open; safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _render_snapshot(snapshot: Snapshot, target: str) -> RenderableType:
    return render(snapshot.workers, snapshot.stats, now=snapshot.taken_at, target=target)


def poll_view(
    poller: Poller, last: Snapshot | None, retry_every: float | None
) -> tuple[RenderableType, Snapshot | None]:
    """Poll once: the view to show, and the latest good snapshot (this poll's if it worked)."""
    try:
        snapshot = poller.poll()
    except AgentmeshError as error:
        previous = _render_snapshot(last, poller.target) if last else None
        view = render_unreachable(poller.target, error, retry_every=retry_every, last=previous)
        return view, last
    return _render_snapshot(snapshot, poller.target), snapshot


def watch(
    poller: Poller,
    interval: float,
    console: Console,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Redraw the view every interval until interrupted (KeyboardInterrupt propagates)."""
    last: Snapshot | None = None
    with Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            started = monotonic()
            view, last = poll_view(poller, last, interval)
            live.update(view, refresh=True)
            sleep(max(0.0, interval - (monotonic() - started)))


def run_top(
    target: str,
    *,
    interval: float = DEFAULT_INTERVAL,
    once: bool = False,
    console: Console | None = None,
    client_factory: Callable[[str], SchedulerClient] = Client,
) -> int:
    """The `agentmesh top` command: 0 on Ctrl-C; with --once, 1 if the scheduler is unreachable."""
    console = console or Console()
    poller = Poller(target, timeout=call_timeout(interval), client_factory=client_factory)
    try:
        if once:
            view, snapshot = poll_view(poller, None, retry_every=None)
            console.print(view)
            return 0 if snapshot is not None else 1
        watch(poller, interval, console)
    except KeyboardInterrupt:
        return 0
    finally:
        poller.close()
    return 0
