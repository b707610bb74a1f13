"""Several scheduler processes over one PostgreSQL database, with workers registered with all."""

from __future__ import annotations

import re
import signal
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from agentmesh.client import Client
from agentmesh.errors import AgentmeshError
from agentmesh.v1 import scheduler_pb2
from tests.support.mesh import ANY_PORT, Mesh, port_of, wait_for


class ReplicaMesh(Mesh):
    """Schedulers `s1`..`sN` on one database (`url`), and workers that register with every
    one of them. `client` is s1's; `clients[name]` any replica's (with `token`, if given)."""

    def __init__(self, log_dir: Path, url: str, lease: float = 1.5, **env: str) -> None:
        super().__init__(log_dir, AGENTMESH_STORE=url, AGENTMESH_LEASE=str(lease), **env)
        self.url = url
        self.replicas: dict[str, str] = {}
        self.metrics_ports: dict[str, int] = {}
        self.clients: dict[str, Client] = {}

    def start_replicas(self, count: int) -> None:
        for i in range(1, count + 1):
            self.start_replica(f"s{i}")

    def start_replica(self, name: str) -> None:
        """Start replica `name`; started again, on the ports it had, where workers find it."""
        env = {**self._scheduler_env, "AGENTMESH_LISTEN": ANY_PORT, "AGENTMESH_REPLICA": name}
        env["AGENTMESH_METRICS_LISTEN"] = ANY_PORT
        if name in self.replicas:
            env["AGENTMESH_LISTEN"] = self.replicas[name]
            env["AGENTMESH_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_ports[name]}"
            self.clients.pop(name).close()
        self._spawn(name, ["scheduler"], env)
        bound = self.ports(name)
        self.replicas[name] = bound.grpc
        self.metrics_ports[name] = port_of(bound.metrics)
        self.clients[name] = Client(bound.grpc, timeout=30.0, token=self.token)
        if not self.port:
            self.port = port_of(bound.grpc)  # `client` and `target`: the first replica
        wait_for(lambda: self._serves(name), 30, f"scheduler {name} to serve")

    def _serves(self, name: str) -> bool:
        try:
            self.clients[name].list_workers(timeout=1.0)
        except AgentmeshError:
            return False
        return True

    def start_worker(self, name: str, **kwargs: Any) -> None:  # type: ignore[override]
        schedulers = ",".join(self.replicas.values())
        super().start_worker(name, AGENTMESH_SCHEDULER=schedulers, **kwargs)

    def wait_workers(self, names: set[str], timeout: float = 60.0) -> None:
        for replica, client in self.clients.items():

            def registered(client: Client = client) -> bool:
                try:
                    return names <= {w.info.worker_id for w in client.list_workers(timeout=2.0)}
                except AgentmeshError:
                    return False

            wait_for(registered, timeout, f"workers {sorted(names)} to register with {replica}")

    def owners(self) -> dict[str, tuple[str, int, str]]:
        """Each request's owner, epoch and state, read from the database."""
        with psycopg.connect(self.url) as db:
            rows = db.execute("SELECT request_id, owner, epoch, state FROM requests").fetchall()
        return {r: (o, e, s) for r, o, e, s in rows}

    def under_way(self, request_id: str, tenants: Iterable[str], on: str, reader: str) -> bool:
        """Whether each tenant's request `request_id` is owned by replica `on` and one of
        their subtasks has succeeded (read on replica `reader`, whose client is an admin's
        when the mesh checks tokens)."""
        tenants = list(tenants)
        owners = self.owners()
        if not all(owners.get(f"{t}/{request_id}", ("",))[0] == on for t in tenants):
            return False
        admin = self.clients[reader]
        states = [
            s.state for t in tenants for s in admin.get_request(request_id, tenant=t).subtasks
        ]
        return scheduler_pb2.SUBTASK_STATE_SUCCEEDED in states

    def metric(self, name: str, sample: str) -> float:
        """A sample of replica `name`'s /metrics (`agentmesh_requests_active`,
        `agentmesh_pool_queued_subtasks{tier="small"}`); 0 when absent."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        found = re.search(rf"^{re.escape(sample)} (\S+)", body, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def active(self, name: str) -> float:
        """The requests replica `name` runs now."""
        return self.metric(name, "agentmesh_requests_active")

    def finished(self, replica: str, request_id: str) -> scheduler_pb2.Request | None:
        """The request as `replica` shows it, once finished; None before (or unreadable)."""
        try:
            request = self.clients[replica].get_request(request_id, timeout=2)
        except AgentmeshError:
            return None
        return request if request.state != scheduler_pb2.REQUEST_STATE_RUNNING else None

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
        super().stop()
