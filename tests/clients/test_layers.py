"""The client stands alone: importing it loads neither server part nor their libraries."""

from __future__ import annotations

import json
import subprocess
import sys

#: What a program that only calls the mesh must not pay for.
SERVER_SIDE = (
    "agentmesh.scheduler",
    "agentmesh.agents",
    "agentmesh.skills",
    "openai",
    "anthropic",
    "jsonschema",
    "opentelemetry.sdk",
    "prometheus_client",
)


def test_importing_the_client_loads_no_server_part_and_no_server_library() -> None:
    program = "import json, sys, agentmesh.client; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True
        ).stdout
    )
    found = [m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVER_SIDE)]
    assert found == []
