"""`agentmesh top` against a real mesh, in a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mesh import ROOT, Mesh, refusing_address, wait_for

pytestmark = pytest.mark.integration

TICKETS = sorted((ROOT / "examples" / "tickets").glob("*.json"))
WORKERS = ("w1", "w2")
REQUEST_IDS = ("top-1", "top-2", "top-3")

# CSI sequences (colours, cursor moves), OSC sequences (titles), charset and keypad switches.
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)
# Rich's full-screen Live moves the cursor home before each redraw.
CURSOR_HOME = "\x1b[H"
DURATION = r"\d+(?:\.\d+)?(?:ms|s)"
PERCENTILES = rf"p50\s+{DURATION}\s+p95\s+{DURATION}\s+p99\s+{DURATION}"


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


def top_command(target: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "agentmesh", "top", "--target", target, *args]


class Terminal:
    """A process on a pseudo-terminal of a fixed size, its output read in the background."""

    def __init__(self, args: list[str], *, rows: int = 50, columns: int = 160) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm-256color"},
            cwd=ROOT,
        )
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the process exited and the terminal closed
                return
            if not data:
                return
            with self._lock:
                self._chunks.append(data)

    def output(self) -> str:
        """Everything written to the terminal so far, ANSI codes included."""
        with self._lock:
            return b"".join(self._chunks).decode(errors="replace")

    def screens(self) -> list[str]:
        """The text of each redraw so far (the last may be partly written)."""
        return [strip_ansi(screen) for screen in self.output().split(CURSOR_HOME)]

    def wait_for_screen(self, *patterns: str, timeout: float = 30.0) -> str:
        """The first screen on which every pattern matches (multiline regexes)."""

        def matching() -> str | None:
            return next(
                (
                    screen
                    for screen in self.screens()
                    if all(re.search(p, screen, re.MULTILINE) for p in patterns)
                ),
                None,
            )

        try:
            return str(wait_for(matching, timeout, f"a screen showing {patterns}"))
        except AssertionError as error:
            raise AssertionError(f"{error}; last screen:\n{self.screens()[-1]}") from None

    def interrupt(self, timeout: float = 15.0) -> int:
        """Ctrl-C: SIGINT, then the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)
        os.close(self._master)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Terminals a test opens, all closed (their processes killed) at its end."""
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A scheduler, two workers, and three finished requests named top-1..top-3."""
    mesh = Mesh(tmp_path_factory.mktemp("mesh"))
    try:
        mesh.start_scheduler()
        for name in WORKERS:
            mesh.start_worker(name)
        mesh.wait_workers(set(WORKERS))
        for request_id, ticket in zip(REQUEST_IDS, TICKETS, strict=False):
            mesh.client.submit(
                "support_ticket", json.loads(ticket.read_text()), request_id=request_id
            )
        yield mesh
    finally:
        mesh.stop()


def test_top_shows_the_mesh_live_and_exits_cleanly_on_ctrl_c(
    mesh: Mesh, terminals: list[Terminal]
) -> None:
    term = Terminal(top_command(mesh.target, "--interval", "0.5"))
    terminals.append(term)
    screen = term.wait_for_screen(
        *(rf"^\s*{w}\s+active\s+\d+/\d+\s+{DURATION}\s+\d+\.\d%\s+{DURATION} ago" for w in WORKERS),
        r"^\s*summarize\s+\d+\s+\S+\s+\S+\s*$",  # a queue row: capability, depth, oldest age, slack
        r"^\s*top-1\s+support_ticket\s+succeeded\s+" + DURATION,
        PERCENTILES,
        r"succeeded\s+[1-9]\d*\s+failed\s+0\s+cancelled\s+0",
        rf"agentmesh top\s+{re.escape(mesh.target)}\s+2 workers",
    )
    # Newest first: the last submitted request is listed above the first one.
    assert screen.index("top-3") < screen.index("top-1")

    # It keeps polling: a request finished now appears on a later screen.
    mesh.client.submit("support_ticket", json.loads(TICKETS[3].read_text()), request_id="top-4")
    term.wait_for_screen(r"^\s*top-4\s+support_ticket\s+succeeded")

    assert term.interrupt() == 0
    assert "Traceback" not in strip_ansi(term.output())


def test_top_once_prints_one_frame_and_exits(mesh: Mesh) -> None:
    result = subprocess.run(
        top_command(mesh.target, "--once"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = strip_ansi(result.stdout)
    for worker in WORKERS:
        assert re.search(rf"^\s*{worker}\s+active", out, re.MULTILINE), out
    assert re.search(r"^\s*top-1\s+support_ticket\s+succeeded", out, re.MULTILINE), out
    assert re.search(PERCENTILES, out), out
    assert out.count("agentmesh top") == 1  # one frame, not a live view


def test_top_once_says_the_scheduler_is_unreachable() -> None:
    with refusing_address() as target:
        result = subprocess.run(
            top_command(target, "--once"), capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    assert result.returncode == 1
    out = " ".join(strip_ansi(result.stdout).split())  # rich may wrap the message
    assert f"Cannot reach the scheduler at {target}" in out, out
    assert "UNAVAILABLE" in out
    assert "Traceback" not in result.stdout + result.stderr


def test_top_waits_for_an_unreachable_scheduler_then_shows_it(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    with refusing_address() as target:  # nothing listens there until the scheduler does
        mesh = Mesh(tmp_path, AGENTMESH_LISTEN=target)
        try:
            term = Terminal(top_command(target, "--interval", "0.5"))
            terminals.append(term)
            term.wait_for_screen(
                rf"Cannot reach the scheduler at {re.escape(target)}", r"Retrying every 500ms"
            )
            assert term.process.poll() is None  # still running, still retrying

            mesh.start_scheduler()
            mesh.start_worker("late-worker")
            mesh.wait_workers({"late-worker"})
            screen = term.wait_for_screen(r"^\s*late-worker\s+active", timeout=30)
            assert "Cannot reach" not in screen

            assert term.interrupt() == 0
            assert "Traceback" not in strip_ansi(term.output())
        finally:
            mesh.stop()
