"""Secure by default: without TLS, the scheduler and workers serve loopback only, and a
listen address beyond it, or half a TLS setting, stops them at start with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

BASE = {"AGENTMESH_LISTEN": "127.0.0.1:0", "AGENTMESH_METRICS_LISTEN": "", "AGENTMESH_STORE": ""}


def start(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
    return subprocess.run(
        [sys.executable, "-m", "agentmesh", *command],
        env={**clean, **BASE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("agentmesh: ") and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    return run.stderr


@pytest.mark.parametrize(
    ("command", "env", "setting"),
    [
        (("scheduler",), {"AGENTMESH_LISTEN": "0.0.0.0:0"}, "AGENTMESH_LISTEN=0.0.0.0:0"),
        (("scheduler", "--listen", "[::]:0"), {}, "AGENTMESH_LISTEN=[::]:0"),
        (
            ("worker",),
            {"AGENTMESH_WORKER_LISTEN": "0.0.0.0:0"},
            "AGENTMESH_WORKER_LISTEN=0.0.0.0:0",
        ),
    ],
    ids=["scheduler-env", "scheduler-flag", "worker"],
)
def test_plaintext_beyond_loopback_stops_the_server_with_one_line(
    command: tuple[str, ...], env: dict[str, str], setting: str
) -> None:
    said = one_line(start(*command, **env))
    assert setting in said
    assert "AGENTMESH_TLS_CERT" in said and "agentmesh certs" in said
    assert "AGENTMESH_INSECURE=1" in said


@pytest.mark.parametrize("command", ["scheduler", "worker"])
def test_half_a_tls_setting_stops_the_server_with_one_line(command: str) -> None:
    said = one_line(start(command, AGENTMESH_TLS_CERT=__file__, AGENTMESH_TLS_CA=__file__))
    assert "set AGENTMESH_TLS_KEY" in said
