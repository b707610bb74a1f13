"""Real meshes for the benchmarks: scheduler and worker processes on 127.0.0.1.

Every process is `python -m agentmesh scheduler|worker` with its settings in
the environment, exactly as a user would start it; the benchmark talks to
them over gRPC like any client. `Cluster` starts several meshes at once
(schedulers first, then all workers) and stops every process it started,
whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.server import ports
from agentmesh.status import from_rpc_error
from agentmesh.tls import TlsConfig, aio_channel
from agentmesh.v1 import (
    plan_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from agentmesh.wire import dict_to_struct

ROOT = Path(__file__).resolve().parents[1]

#: Longest a mesh may take to come up (scheduler serving, workers registered).
STARTUP_TIMEOUT = 60.0
#: Longest a process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


def base_env() -> dict[str, str]:
    """This process's environment without agentmesh or OpenTelemetry settings.

    A benchmark must not pick up the caller's AGENTMESH_* or OTEL_* variables
    (tracing would change what is measured); each process gets exactly the
    settings its scenario states.
    """
    return {k: v for k, v in os.environ.items() if not k.startswith(("AGENTMESH_", "OTEL_"))}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll condition() until it is truthy; RuntimeError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its id and its environment (backend, latency, tier, ...)."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)


def sim_worker(
    name: str,
    *,
    latency: float,
    seed: int,
    capacity: int = 4,
    sigma: float | None = None,
    **extra: str,
) -> WorkerSpec:
    """A `sim` worker answering through `echo` after a seeded log-normal latency."""
    env = {
        "AGENTMESH_BACKEND": "sim",
        "AGENTMESH_SIM_INNER": "echo",
        "AGENTMESH_SIM_LATENCY": repr(latency),
        "AGENTMESH_SIM_SEED": str(seed),
        "AGENTMESH_CAPACITY": str(capacity),
        **extra,
    }
    if sigma is not None:
        env["AGENTMESH_SIM_SIGMA"] = repr(sigma)
    return WorkerSpec(name, env)


class Mesh:
    """One scheduler process and its worker processes."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        workers: Sequence[WorkerSpec],
        *,
        policy: str = "latency_weighted",
        env: Mapping[str, str] | None = None,
        client_tls: TlsConfig | None = None,
    ) -> None:
        """`client_tls`: the TLS settings of `client`, for a mesh with TLS on (the scheduler's
        and the workers' are in `env` and each WorkerSpec's env)."""
        self.name = name
        self.client_tls = client_tls
        self.log_dir = log_dir
        self.worker_specs = list(workers)
        self.policy = policy
        # The scheduler listens on port 0 and reports the ports it got in this file.
        self.ports_file = log_dir / f"{name}-scheduler.ports.json"
        self.port = 0
        self.metrics_port = 0
        # Each scheduler keeps its own durable store (the default SQLite one), fresh:
        # a shared or reused file would resume another run's requests.
        self.store = log_dir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.store}{suffix}").unlink(missing_ok=True)
        self.scheduler_env = {
            "AGENTMESH_LISTEN": "127.0.0.1:0",
            "AGENTMESH_METRICS_LISTEN": "127.0.0.1:0",
            "AGENTMESH_PORTS_FILE": str(self.ports_file),
            "AGENTMESH_POLICY": policy,
            "AGENTMESH_STORE": str(self.store),
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self._client: Client | None = None

    @property
    def target(self) -> str:
        """The scheduler's gRPC address, known once it has reported its ports."""
        if not self.port:
            raise RuntimeError(f"{self.name}: the scheduler has not reported its ports yet")
        return f"127.0.0.1:{self.port}"

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.target, timeout=10.0, tls=self.client_tls)
        return self._client

    # -- processes --------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{self.name}-{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "agentmesh", *args],
                env={**base_env(), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                # Not the repository: nothing a process writes by default lands there.
                cwd=self.log_dir,
            )
        self.started_at[name] = time.monotonic()

    def spawn_scheduler(self) -> None:
        self.ports_file.unlink(missing_ok=True)
        self._spawn("scheduler", ["scheduler"], self.scheduler_env)

    def spawn_workers(self) -> None:
        for spec in self.worker_specs:
            self._spawn(
                spec.name,
                ["worker"],
                {
                    "AGENTMESH_SCHEDULER": self.target,
                    "AGENTMESH_WORKER_ID": spec.name,
                    # Stopping a bench mesh need not wait long for in-flight work.
                    "AGENTMESH_DRAIN_TIMEOUT": "2",
                    **spec.env,
                },
            )

    def scheduler_serving(self) -> bool:
        self._check_alive()
        if not self.port:
            bound = ports.read(self.ports_file)
            if bound is None:
                return False
            self.port = int(bound.grpc.rpartition(":")[2])
            self.metrics_port = int(bound.metrics.rpartition(":")[2]) if bound.metrics else 0
        try:
            self.client.list_workers(timeout=1.0)
        except AgentmeshError:
            return False
        return True

    def workers_registered(self) -> bool:
        self._check_alive()
        try:
            ids = {w.info.worker_id for w in self.client.list_workers(timeout=2.0)}
        except AgentmeshError:
            return False
        return {spec.name for spec in self.worker_specs} <= ids

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.name}/{name} exited with {process.returncode}; "
                    f"see {self.log_dir / f'{self.name}-{name}.log'}"
                )

    @property
    def scheduler_pid(self) -> int:
        return self.processes["scheduler"].pid

    def stop(self) -> None:
        """SIGTERM every process (workers first), then wait; kill what lingers."""
        if self._client is not None:
            self._client.close()
        order = [n for n in self.processes if n != "scheduler"] + ["scheduler"]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    # -- observing --------------------------------------------------------------

    def worker_addresses(self) -> dict[str, str]:
        """Worker id → the address it serves WorkerService on."""
        return {w.info.worker_id: w.info.address for w in self.client.list_workers(timeout=5.0)}

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the scheduler process has used so far."""
        return process_cpu_seconds(self.scheduler_pid)

    def metrics(self) -> dict[str, float]:
        """The scheduler's Prometheus samples, summed over their labels, by sample name."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5.0) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
        return totals


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process, from /proc/<pid>/stat (Linux)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after it are plain.
    after_name = raw.rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """Several meshes started together and stopped together.

    with Cluster([mesh_a, mesh_b]) as cluster: ...
    """

    def __init__(self, meshes: Sequence[Mesh]) -> None:
        self.meshes = list(meshes)

    def __enter__(self) -> Cluster:
        try:
            for mesh in self.meshes:
                mesh.spawn_scheduler()
            for mesh in self.meshes:
                wait_for(mesh.scheduler_serving, STARTUP_TIMEOUT, f"scheduler {mesh.name}")
            for mesh in self.meshes:
                mesh.spawn_workers()
            for mesh in self.meshes:
                wait_for(mesh.workers_registered, STARTUP_TIMEOUT, f"workers of {mesh.name}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for mesh in self.meshes:
            mesh.stop()


# -- calling the mesh ---------------------------------------------------------------


class SchedulerCaller:
    """Asyncio calls to one scheduler's Dispatch and Submit, raising agentmesh errors."""

    def __init__(self, target: str, tls: TlsConfig | None = None) -> None:
        self._channel = aio_channel(target, tls)
        self._stub = scheduler_pb2_grpc.SchedulerServiceStub(self._channel)

    async def dispatch(
        self, capability: str, data: Mapping[str, Any], timeout: float
    ) -> scheduler_pb2.DispatchResponse:
        request = scheduler_pb2.DispatchRequest(
            capability=capability, input=dict_to_struct(dict(data))
        )
        try:
            return await self._stub.Dispatch(request, timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def submit(
        self,
        plan: plan_pb2.Plan,
        data: Mapping[str, Any],
        timeout: float,
        *,
        view: scheduler_pb2.RequestView.ValueType = scheduler_pb2.REQUEST_VIEW_UNSPECIFIED,
    ) -> scheduler_pb2.Request:
        """The finished request: BASIC (no plan, no subtasks) unless `view` is FULL."""
        request = scheduler_pb2.SubmitRequest(
            plan=plan, input=dict_to_struct(dict(data)), view=view
        )
        try:
            response = await self._stub.Submit(request, timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return response.request

    async def close(self) -> None:
        await self._channel.close()


class WorkerCaller:
    """Asyncio calls to one worker's WorkerService.Execute, bypassing the scheduler."""

    def __init__(self, address: str) -> None:
        self._channel = aio.insecure_channel(address)
        self._stub = worker_pb2_grpc.WorkerServiceStub(self._channel)

    async def execute(
        self, capability: str, data: Mapping[str, Any], timeout: float
    ) -> worker_pb2.ExecuteResponse:
        # A fresh idempotency key per call: a repeated key would be replayed, not run.
        request = execute_request(capability, data)
        try:
            return await self._stub.Execute(request, timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def close(self) -> None:
        await self._channel.close()


def execute_request(capability: str, data: Mapping[str, Any]) -> worker_pb2.ExecuteRequest:
    """An ExecuteRequest with a fresh (request id, subtask id), as the scheduler sends."""
    return worker_pb2.ExecuteRequest(
        request_id=uuid.uuid4().hex,
        subtask_id="bench",
        capability=capability,
        input=dict_to_struct(dict(data)),
        attempt=1,
    )


async def pause(seconds: float) -> None:
    """Let a mesh settle between trials (queues drain, in-flight work ends)."""
    await asyncio.sleep(seconds)
