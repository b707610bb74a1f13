"""A real mesh for integration tests: scheduler and workers as child processes.

Every server listens on port 0 and says which port it got in its ports file
(AGENTMESH_PORTS_FILE, `agentmesh.server.ports`): no test picks a free port and
races another process for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.server import ports
from agentmesh.tls import TlsConfig

ROOT = Path(__file__).resolve().parents[2]

#: Any free port on loopback, for a server to pick and report.
ANY_PORT = "127.0.0.1:0"


def port_of(address: str) -> int:
    """The port of a host:port address."""
    return int(address.rpartition(":")[2])


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """A loopback host:port where connections are refused until a server listens there.

    A socket bound to it and not listening holds the port for the block, so no
    other process takes it; it sets SO_REUSEPORT, as gRPC servers do, so that a
    scheduler told to listen there can bind it meanwhile, with no gap to race in.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


def wait_ports(
    path: Path, process: subprocess.Popen[Any], timeout: float, what: str
) -> ports.Bound:
    """The addresses a started process wrote to its ports file; fails at once if it exits."""

    def announced() -> ports.Bound | None:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode} before serving")
        return ports.read(path)

    bound = wait_for(announced, timeout, f"{what} to write {path.name}")
    assert isinstance(bound, ports.Bound)
    return bound


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll until condition() is truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(0.05)


class Mesh:
    """A scheduler process and named worker processes on loopback ports.

    The scheduler starts on port 0 (gRPC and /metrics); `port`, `metrics_port`,
    `target` and `client` are known once `start_scheduler()` has returned, and a
    restarted scheduler comes back on the same ports, where its workers find it.
    """

    def __init__(
        self,
        log_dir: Path,
        heartbeat_interval: float = 0.5,
        token: str = "",
        client_tls: TlsConfig | None = None,
        **scheduler_env: str,
    ) -> None:
        """`client_tls`: the TLS settings of `client`, for a scheduler with TLS on."""
        self.log_dir = log_dir
        #: The bearer token of `client` (an admin's, for a scheduler that checks tokens).
        self.token = token
        self.client_tls = client_tls
        self.port = 0
        self.metrics_port = 0
        self.heartbeat_interval = heartbeat_interval
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._scheduler_env = {
            "AGENTMESH_LISTEN": ANY_PORT,
            "AGENTMESH_METRICS_LISTEN": ANY_PORT,
            "AGENTMESH_HEARTBEAT_INTERVAL": str(heartbeat_interval),
            "AGENTMESH_STORE": str(log_dir / "scheduler.db"),
            **scheduler_env,
        }
        self._client: Client | None = None

    @property
    def target(self) -> str:
        """The scheduler's gRPC address, host:port."""
        if not self.port:
            raise AssertionError("the scheduler's address is known once start_scheduler() ran")
        return f"127.0.0.1:{self.port}"

    @property
    def client(self) -> Client:
        """A client of the scheduler, made on first use."""
        if self._client is None:
            self._client = Client(self.target, timeout=30.0, token=self.token, tls=self.client_tls)
        return self._client

    def ports_file(self, name: str) -> Path:
        """Where the process `name` writes the addresses it bound."""
        return self.log_dir / f"{name}.ports.json"

    def ports(self, name: str, timeout: float = 30.0) -> ports.Bound:
        """The addresses the process `name` bound (waiting until it has written them)."""
        return wait_ports(self.ports_file(name), self.processes[name], timeout, name)

    def worker_metrics_port(self, name: str) -> int:
        """The /metrics port a worker started with `metrics=True` got."""
        address = self.ports(name).metrics
        assert address, f"worker {name} serves no /metrics: start it with metrics=True"
        return port_of(address)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")
        # A new process writes its own file: an old one must not be taken for it.
        self.ports_file(name).unlink(missing_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", "agentmesh", *args],
            env={**os.environ, "AGENTMESH_PORTS_FILE": str(self.ports_file(name)), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.processes[name] = process
        return process

    def start_scheduler(self) -> None:
        """Start the scheduler (again) and wait until it serves."""
        self._spawn("scheduler", ["scheduler"], self._scheduler_env)
        bound = self.ports("scheduler")
        if not self.port:
            self.port = port_of(bound.grpc)
            self.metrics_port = port_of(bound.metrics) if bound.metrics else 0
            # Restarted, it comes back where the workers and the client know to find it.
            self._scheduler_env |= {
                "AGENTMESH_LISTEN": bound.grpc,
                "AGENTMESH_METRICS_LISTEN": bound.metrics,
            }
        wait_for(self._scheduler_up, 30, "the scheduler to serve")

    def _scheduler_up(self) -> bool:
        try:
            self.client.list_workers(timeout=1.0)
        except AgentmeshError:
            return False
        return True

    def start_worker(
        self,
        name: str,
        *,
        backend: str = "builtin",
        skills: str = "",
        metrics: bool = False,
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        """Start a worker; with `metrics`, it serves /metrics on a port of its own
        (`worker_metrics_port(name)`); `args` go to `agentmesh worker` as they are.
        `ports(name)` says where it listens."""
        command = ["worker", "--backend", backend, *args]
        if skills:
            command += ["--skills", skills]
        if metrics:
            env = {"AGENTMESH_WORKER_METRICS_LISTEN": ANY_PORT, **env}
        self._spawn(
            name,
            command,
            {"AGENTMESH_SCHEDULER": self.target, "AGENTMESH_WORKER_ID": name, **env},
        )

    def worker_ids(self) -> set[str]:
        try:
            return {w.info.worker_id for w in self.client.list_workers(timeout=2.0)}
        except AgentmeshError:
            return set()

    def wait_workers(self, names: set[str], timeout: float = 60.0) -> None:
        wait_for(
            lambda: names <= self.worker_ids(), timeout, f"workers {sorted(names)} to register"
        )

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.processes[name].send_signal(sig)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def completed_runs(port: int) -> tuple[int, int]:
    """Subtasks a worker completed (code OK), and repeats it answered from its store."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    ok = sum(
        float(v)
        for v in re.findall(r'agentmesh_worker_subtasks_total\{[^}]*code="OK"[^}]*\} (\S+)', body)
    )
    replays = re.search(r"^agentmesh_worker_replays_total (\S+)", body, re.MULTILINE)
    return int(ok), int(float(replays.group(1))) if replays else 0


@contextlib.contextmanager
def running_mesh(log_dir: Path, workers: tuple[str, ...] = ("w1",), **env: str) -> Iterator[Mesh]:
    """A scheduler and builtin workers, up and registered; stopped on leaving."""
    mesh = Mesh(log_dir, **env)
    try:
        mesh.start_scheduler()
        for name in workers:
            mesh.start_worker(name)
        mesh.wait_workers(set(workers))
        yield mesh
    finally:
        mesh.stop()


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def refused(
    call: Any, request: Any, timeout: float = 30.0
) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The code, message and BadRequest violations (field: description) of a call that must
    fail; a streaming call is read to its end, where its status comes."""
    try:
        answer = call(request, timeout=timeout)
        if isinstance(answer, grpc.Call):
            list(answer)
    except grpc.RpcError as error:
        violations: dict[str, str] = {}
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations |= {v.field: v.description for v in bad.field_violations}
        return error.code(), error.details(), violations  # type: ignore[attr-defined]
    raise AssertionError(f"the call did not fail: {request}")


@contextlib.contextmanager
def agentmesh_run(
    *args: str, env: dict[str, str], timeout: float
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`agentmesh run ARGS` as a user starts it: yields the process and the lines it has
    printed once its banner is out; on leaving, Ctrl-C and a wait (a kill if it hangs).
    The exit status is the process's `returncode` afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agentmesh", "run", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    try:
        wait_for(lambda: any("Stop with Ctrl-C" in line for line in lines), timeout, "the banner")
        yield process, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
