"""The addresses a server bound, announced once it serves.

A scheduler or worker told to listen on port 0 gets a free port from the
kernel, and only it knows which. So that whoever started it need not pick a
free port beforehand (and race another process for it), each server says
what it bound once it is serving: in a log line, and, when
AGENTMESH_PORTS_FILE names a path, in a JSON file there:

    {"grpc": "127.0.0.1:41234", "metrics": "127.0.0.1:41235", "pid": 4242}

`metrics` is absent when the process serves no /metrics. The file is
written atomically (a temporary file in the same folder, then a rename), so
a reader sees either no file or a whole one; a restarted process writes it
again, and the file is left in place when the process exits, so a reader
that starts a process removes the old file first (or checks `pid`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """What one process bound: host:port strings, and the process id."""

    grpc: str
    """The gRPC address, host:port, with the port the kernel gave."""
    metrics: str = ""
    """The /metrics address, host:port; empty when metrics are off."""
    pid: int = 0
    """The process that bound them."""


def bound(listen: str, port: int) -> str:
    """The listen address (host:port) with the port actually bound."""
    return f"{listen.rpartition(':')[0]}:{port}"


def announce(what: str, path: str, grpc: str, metrics: str = "") -> Bound:
    """Log "<what> serving" with this process's addresses, and write them to `path` if set."""
    addresses = Bound(grpc, metrics, os.getpid())
    log.info(f"{what} serving", extra={"grpc": grpc, "metrics": metrics})
    if path:
        write(Path(path), addresses)
    return addresses


def write(path: Path, addresses: Bound) -> None:
    """Write the addresses to `path` as JSON, atomically (temporary file, then rename)."""
    data: dict[str, str | int] = {"grpc": addresses.grpc}
    if addresses.metrics:
        data["metrics"] = addresses.metrics
    data["pid"] = addresses.pid
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read(path: Path) -> Bound | None:
    """The addresses written to `path`, or None while there is no file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return Bound(
        grpc=str(data["grpc"]), metrics=str(data.get("metrics", "")), pid=int(data.get("pid", 0))
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port free at this moment, for a server that cannot report the one it binds
    (llama.cpp's, whose address is logged only at info verbosity). Racy: another process
    may take it first; agentmesh's own servers bind port 0 and announce instead."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether GET `url` answers 200 (a server's health endpoint); False when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
