"""The `agentmesh top` view, rendered from protobuf messages built here; no server."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from rich.console import Console, RenderableType

from agentmesh.errors import AgentmeshError, Unavailable
from agentmesh.top import (
    Poller,
    call_timeout,
    format_seconds,
    poll_view,
    render,
    render_unreachable,
    run_top,
)
from agentmesh.v1 import scheduler_pb2, worker_pb2

NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(at: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return stamp


def dur(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


def worker(
    worker_id: str,
    *,
    state: int = scheduler_pb2.WORKER_STATE_ACTIVE,
    in_flight: int = 0,
    capacity: int = 4,
    latency: float = 0.05,
    error_rate: float = 0.0,
    heartbeat_age: float | None = 0.5,
    capabilities: tuple[str, ...] = ("summarize", "sentiment"),
) -> scheduler_pb2.WorkerStatus:
    return scheduler_pb2.WorkerStatus(
        info=worker_pb2.WorkerInfo(
            worker_id=worker_id, capacity=capacity, capabilities=list(capabilities)
        ),
        state=state,
        in_flight=in_flight,
        latency_estimate=dur(latency),
        error_rate=error_rate,
        last_heartbeat=(
            None if heartbeat_age is None else ts(NOW - timedelta(seconds=heartbeat_age))
        ),
    )


def summary(
    request_id: str, state: int, duration: float, *, error_code: str = "", age: float = 1.0
) -> scheduler_pb2.RequestSummary:
    return scheduler_pb2.RequestSummary(
        request_id=request_id,
        workflow="support_ticket",
        state=state,
        duration=dur(duration),
        finished_at=ts(NOW - timedelta(seconds=age)),
        error_code=error_code,
    )


def stats() -> scheduler_pb2.GetStatsResponse:
    return scheduler_pb2.GetStatsResponse(
        queues=[
            scheduler_pb2.QueueStats(
                capability="summarize", depth=3, oldest_age=dur(4.5), least_slack=dur(-0.75)
            ),
            scheduler_pb2.QueueStats(
                capability="classify", depth=1, oldest_age=dur(0.2), least_slack=dur(2.5)
            ),
            scheduler_pb2.QueueStats(capability="sentiment", depth=0),
        ],
        active_requests=7,
        window=dur(60),
        succeeded=40,
        failed=2,
        cancelled=1,
        requests_per_second=0.72,
        latency_p50=dur(0.08),
        latency_p95=dur(1.25),
        latency_p99=dur(2.5),
        recent=[
            summary("req-3", scheduler_pb2.REQUEST_STATE_FAILED, 2.5, error_code="UNAVAILABLE"),
            summary("req-2", scheduler_pb2.REQUEST_STATE_CANCELLED, 0.3, error_code="CANCELLED"),
            summary("req-1", scheduler_pb2.REQUEST_STATE_SUCCEEDED, 0.08, age=75),
        ],
    )


def text_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def ansi_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system="standard")
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def row(text: str, first: str) -> str:
    """The one table row of the rendered text that starts with the word `first`, to its end."""
    rows = re.findall(rf"(?<![\w-]){re.escape(first)} .*$", text, re.MULTILINE)
    assert len(rows) == 1, (first, text)
    return str(rows[0])


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0.0ms"),
        (0.0042, "4.2ms"),
        (0.087, "87ms"),
        (1.25, "1.25s"),
        (59.994, "59.99s"),
        (125, "2m05s"),
        (3780, "1h03m"),
    ],
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown


def test_workers_rows_show_state_load_latency_errors_heartbeat_and_capabilities() -> None:
    workers = [
        worker("w2", state=scheduler_pb2.WORKER_STATE_DRAINING, in_flight=1, latency=1.5),
        worker("w1", in_flight=3, capacity=8, latency=0.12, error_rate=0.25, heartbeat_age=2),
    ]
    text = text_of(render(workers, stats(), now=NOW, target="127.0.0.1:50051"))
    assert row(text, "w1").split() == [
        "w1",
        "active",
        "3/8",
        "120ms",
        "25.0%",
        "2.00s",
        "ago",
        "summarize,",
        "sentiment",
    ]
    assert row(text, "w2").split()[:6] == ["w2", "draining", "1/4", "1.50s", "0.0%", "500ms"]
    assert text.index("w1 ") < text.index("w2 ")  # sorted by id
    assert re.search(r"agentmesh top\s+127\.0\.0\.1:50051\s+2 workers", text)


def test_queues_show_depth_oldest_age_and_least_slack() -> None:
    text = text_of(render([], stats(), now=NOW))
    assert row(text, "summarize").split() == ["summarize", "3", "4.50s", "-750ms"]
    assert row(text, "classify").split() == ["classify", "1", "200ms", "2.50s"]
    assert row(text, "sentiment").split() == ["sentiment", "0", "-", "-"]


def test_request_totals_rate_and_percentiles() -> None:
    text = text_of(render([], stats(), now=NOW))
    assert "requests (last 1m00s)" in text
    assert re.search(r"active\s+7\s+rate\s+0\.72/s", text)
    assert re.search(r"p50\s+80ms\s+p95\s+1\.25s\s+p99\s+2\.50s", text)
    assert re.search(r"succeeded\s+40\s+failed\s+2\s+cancelled\s+1", text)


def test_recent_requests_newest_first_with_outcome_duration_and_error() -> None:
    text = text_of(render([], stats(), now=NOW))
    assert row(text, "req-3").split() == [
        "req-3",
        "support_ticket",
        "failed",
        "2.50s",
        "UNAVAILABLE",
        "1.00s",
        "ago",
    ]
    assert row(text, "req-1").split() == [
        "req-1",
        "support_ticket",
        "succeeded",
        "80ms",
        "1m15s",
        "ago",
    ]
    assert text.index("req-3") < text.index("req-2") < text.index("req-1")


def test_outcomes_are_coloured() -> None:
    ansi = ansi_of(render([], stats(), now=NOW))
    assert "\x1b[1;31mfailed" in ansi  # bold red
    assert "\x1b[33mcancelled" in ansi  # yellow
    assert "\x1b[32msucceeded" in ansi  # green


def test_an_empty_mesh_says_so() -> None:
    text = text_of(render([], scheduler_pb2.GetStatsResponse(), now=NOW))
    assert "no workers registered" in text
    assert "no queues yet" in text
    assert "no finished requests yet" in text
    assert re.search(r"p50\s+0\.0ms", text)


def test_a_worker_that_never_reported_has_no_heartbeat_age() -> None:
    text = text_of(render([worker("w1", heartbeat_age=None)], stats(), now=NOW))
    assert row(text, "w1").split()[5] == "-"


def test_the_view_fits_a_narrow_terminal() -> None:
    text = text_of(render([worker("w1")], stats(), now=NOW), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert re.search(r"p50\s+80ms\s+p95\s+1\.25s\s+p99\s+2\.50s", text)
    assert row(text, "req-3").split()[:3] == ["req-3", "support_ticket", "failed"]


def test_unreachable_says_where_and_why_and_keeps_the_last_view() -> None:
    error = Unavailable("failed to connect to all addresses")
    text = text_of(render_unreachable("127.0.0.1:1", error, retry_every=0.5))
    assert "Cannot reach the scheduler at 127.0.0.1:1" in text
    assert "UNAVAILABLE: failed to connect to all addresses" in text
    assert "Retrying every 500ms" in text
    assert "w1" not in text

    last = render([worker("w1")], stats(), now=NOW)
    text = text_of(render_unreachable("127.0.0.1:1", error, last=last))
    assert "Retrying" not in text  # --once does not retry
    assert text.index("Cannot reach") < text.index("last view") < text.index("w1 ")


# -- polling, with a fake client ---------------------------------------------------


class FakeClient:
    """A scheduler client whose answers (or errors) are scripted, shared by every instance."""

    def __init__(self, script: list[object], log: list[str]) -> None:
        self.script = script
        self.log = log
        self.log.append("open")

    def _next(self, call: str, timeout: float | None) -> object:
        self.log.append(f"{call}(timeout={timeout})")
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def list_workers(
        self, capability: str = "", *, timeout: float | None = None
    ) -> list[scheduler_pb2.WorkerStatus]:
        return self._next("list_workers", timeout)  # type: ignore[return-value]

    def get_stats(
        self, recent_requests: int = 0, *, timeout: float | None = None
    ) -> scheduler_pb2.GetStatsResponse:
        return self._next("get_stats", timeout)  # type: ignore[return-value]

    def close(self) -> None:
        self.log.append("close")


def fake_factory(script: list[object], log: list[str]):  # type: ignore[no-untyped-def]
    return lambda target: FakeClient(script, log)


def test_poller_passes_deadlines_and_reconnects_after_a_failure() -> None:
    log: list[str] = []
    script: list[object] = [Unavailable("down"), [worker("w1")], stats()]
    poller = Poller(
        "127.0.0.1:1", timeout=2.0, client_factory=fake_factory(script, log), clock=lambda: NOW
    )
    with pytest.raises(Unavailable):
        poller.poll()
    snapshot = poller.poll()
    assert [w.info.worker_id for w in snapshot.workers] == ["w1"]
    assert snapshot.stats.active_requests == 7 and snapshot.taken_at == NOW
    # A failed channel is closed and a fresh one made: no waiting out gRPC's reconnect backoff.
    assert log == [
        "open",
        "list_workers(timeout=2.0)",
        "close",
        "open",
        "list_workers(timeout=2.0)",
        "get_stats(timeout=2.0)",
    ]
    poller.close()
    poller.close()
    assert log[-1] == "close" and log.count("close") == 2


def test_poll_view_keeps_the_last_good_snapshot_when_a_poll_fails() -> None:
    script: list[object] = [[worker("w1")], stats(), Unavailable("gone")]
    poller = Poller(
        "127.0.0.1:1", timeout=1.0, client_factory=fake_factory(script, []), clock=lambda: NOW
    )
    view, last = poll_view(poller, None, retry_every=1.0)
    assert last is not None and "w1 " in text_of(view)
    view, kept = poll_view(poller, last, retry_every=1.0)
    assert kept is last
    text = text_of(view)
    assert "Cannot reach the scheduler" in text and "w1 " in text


def test_call_timeout_follows_the_interval_within_bounds() -> None:
    assert call_timeout(0.1) == 1.0
    assert call_timeout(2.0) == 2.0
    assert call_timeout(60.0) == 5.0


def test_run_top_once_prints_one_frame() -> None:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    script: list[object] = [[worker("w1")], stats()]
    assert run_top("t:1", once=True, console=console, client_factory=fake_factory(script, [])) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "w1 " in out and "req-3" in out


def test_run_top_once_unreachable_exits_1() -> None:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    script: list[object] = [Unavailable("refused")]
    code = run_top("t:1", once=True, console=console, client_factory=fake_factory(script, []))
    assert code == 1
    assert "Cannot reach the scheduler at t:1" in console.file.getvalue()  # type: ignore[attr-defined]


def test_run_top_keeps_polling_through_errors_and_ctrl_c_exits_0() -> None:
    log: list[str] = []
    script: list[object] = [
        [worker("w1")],
        stats(),
        AgentmeshError("boom"),
        [worker("w1")],
        stats(),
        KeyboardInterrupt(),
    ]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    code = run_top("t:1", interval=0.01, console=console, client_factory=fake_factory(script, log))
    assert code == 0
    assert not script  # every scripted answer was asked for: the error did not stop the loop
    assert log[-1] == "close"  # the channel is closed on the way out


def test_capability_names_are_never_split_in_a_narrow_terminal() -> None:
    names = ("classify", "detect_language", "draft_reply", "extract_entities", "summarize")
    text = text_of(render([worker("builtin-1", capabilities=names)], stats(), now=NOW), width=80)
    words = set(re.findall(r"[a-z_]+", text))
    assert set(names) <= words, sorted(set(names) - words)
