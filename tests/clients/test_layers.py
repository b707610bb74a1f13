"""The client stands alone: importing it loads neither server part nor their libraries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: What a program that only calls the mesh must not pay for.
SERVER_SIDE = (
    "agentmesh.scheduler",
    "agentmesh.agents",
    "agentmesh.server.skills",
    "openai",
    "anthropic",
    "jsonschema",
    "jsonschema_rs",
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


# -- the client distribution, installed alone ------------------------------------

ROOT = Path(__file__).resolve().parents[2]

#: What a checkout holds beside its sources once installed and run.
LOCAL_FILES = ("build", "*.egg-info", "__pycache__")


def _closure(names: list[str]) -> set[str]:
    """The distributions `names` require (no extras), transitively, as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _copy_installed(name: str, site: Path) -> None:
    """Install `name` into `site` as it is installed here: its recorded files, copied."""
    dist = metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file)))
        if source.is_file() and source.resolve().is_relative_to(base.resolve()):
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_the_client_distribution_alone_calls_a_mesh(tmp_path: Path) -> None:
    """A fresh venv with only protos/ and clients/python/ and what they declare: the client
    imports, none of the server side comes with it, and a call fails the documented way."""
    # Built from copies: a build leaves build/ and *.egg-info/ beside its sources.
    sources = []
    for part in ("protos", "clients/python"):
        sources.append(tmp_path / "src" / part)
        shutil.copytree(ROOT / part, sources[-1], ignore=shutil.ignore_patterns(*LOCAL_FILES))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(wheels), *map(str, sources)],
        check=True,
    )  # fmt: skip
    venv.EnvBuilder(with_pip=False).create(tmp_path / "venv")
    python = tmp_path / "venv/bin/python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), *map(str, wheels.glob("*.whl"))],
        check=True,
    )  # fmt: skip
    dependencies = _closure(["agentmesh"]) - {"agentmesh", "agentmesh-protos"}
    assert {"grpcio", "protobuf"} <= dependencies
    server_side = {
        "openai",
        "anthropic",
        "jsonschema",
        "jsonschema-rs",
        "opentelemetry-sdk",
        "prometheus-client",
    }
    assert not dependencies & (server_side | {"agentmesh-scheduler", "agentmesh-agents"})
    for name in dependencies:
        _copy_installed(name, site)

    program = """
import json, sys
from agentmesh.client import Client
from agentmesh.errors import Unavailable
try:
    Client("127.0.0.1:1", timeout=5).list_workers()
except Unavailable as error:
    code = error.code_name
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
    out = subprocess.run(
        [python, "-I", "-c", program], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    result = json.loads(out)
    assert result["code"] == "UNAVAILABLE"
    loaded = [m for m in result["modules"] if m.split(".")[0] == "agentmesh"]
    assert "agentmesh.client" in loaded
    assert not [m for m in loaded if m.startswith(("agentmesh.scheduler", "agentmesh.agents",
                                                   "agentmesh.server"))]  # fmt: skip
    # The CLI offers the client's commands, and no server's.
    usage = subprocess.run(
        [python, "-I", "-m", "agentmesh", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "submit" in usage and "workers" in usage
    assert "scheduler" not in usage and "worker " not in usage
