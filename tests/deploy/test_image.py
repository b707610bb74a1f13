"""The Dockerfile, checked offline (no container engine runs here): what it copies exists
and is in the build context, it installs the parts as `make install` does, its final
stage holds no build tools and runs as the user the manifests name, and it runs the CLI's
own commands."""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass

import pytest

from tests.deploy.kube import OVERLAYS, ROOT, containers, pod_templates, rendered

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str
    stage: int

    def words(self) -> list[str]:
        return shlex.split(self.rest)


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each with its stage index."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            joined.append(text)
    found: list[Instruction] = []
    stage = -1
    for text in joined:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, rest.strip(), stage))
    return found


def final_stage() -> list[Instruction]:
    all_ = instructions()
    last = max(i.stage for i in all_)
    return [i for i in all_ if i.stage == last]


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.rest)
    assert isinstance(value, list), f"{instruction.keyword} is not in exec form"
    return value


def test_it_has_a_build_stage_and_a_slim_final_stage() -> None:
    froms = [i for i in instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2
    for f in froms:
        image = f.words()[0]
        assert image.startswith("python:") and image.endswith("-slim"), image


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` (a folder, with its trailing slash) out: the
    last pattern that matches it or one of its parents decides, as Docker's does."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(p, glob) for p in prefixes):
            ignored = not negated
    return ignored


def test_every_path_it_copies_exists_and_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [i for i in instructions() if i.keyword in ("COPY", "ADD")]
    sources = [i.words()[:-1] for i in copies if not i.rest.startswith("--from")]
    assert sources, "nothing copied from the repository"
    for paths in sources:
        for path in paths:
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
            assert not _ignored(path, patterns), f".dockerignore leaves {path} out"
    # What it installs from is copied: each part's pyproject.toml is in the context.
    for part in ("protos", "clients/python", "scheduler", "agents"):
        assert not _ignored(f"{part}/pyproject.toml", patterns)
    assert _ignored("agents/node/", patterns)  # the Node worker is no part of the image
    assert _ignored(".venv/", patterns) and _ignored("tests/", patterns)


def test_it_installs_the_parts_as_make_install_does() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (line,) = [x for x in makefile.splitlines() if x.startswith("EDITABLES :=")]
    editables = shlex.split(line.partition(":=")[2])
    wanted = [w for w in editables if w != "-e"]
    installs = [
        i.words()
        for i in instructions()
        if i.keyword == "RUN" and "pip install" in i.rest and "./" in i.rest
    ]
    assert len(installs) == 1, installs
    words = installs[0]
    # The last pip install of the RUN: the parts, as make install names them, not editable.
    last = len(words) - 1 - words[::-1].index("install")
    assert words[last + 1 :] == wanted
    assert all(i.stage == 0 for i in instructions() if i.keyword == "RUN" and "./" in i.rest)


def test_the_final_stage_has_no_build_tools_and_runs_as_the_manifests_user() -> None:
    final = final_stage()
    for i in final:
        if i.keyword == "RUN":
            for tool in ("pip install", "apt-get install", "gcc", "build-essential"):
                assert tool not in i.rest, f"the final stage runs {tool}"
        if i.keyword in ("COPY", "ADD"):
            assert i.rest.startswith("--from="), "the final stage copies only from a stage"
    (user,) = [i for i in final if i.keyword == "USER"]
    uid, _, gid = user.rest.partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric uid for runAsNonRoot"
    for overlay in OVERLAYS:
        for _, template in pod_templates(rendered(overlay)):
            context = template["spec"]["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid or uid))


def test_the_entrypoint_is_the_cli_and_its_commands_exist() -> None:
    final = final_stage()
    (entrypoint,) = [i for i in final if i.keyword == "ENTRYPOINT"]
    (cmd,) = [i for i in final if i.keyword == "CMD"]
    project = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())
    assert exec_form(entrypoint) == list(project["project"]["scripts"])  # ["agentmesh"]
    commands = {tuple(exec_form(cmd))}
    for overlay in OVERLAYS:
        for _, template in pod_templates(rendered(overlay)):
            for c in containers(template):
                assert "command" not in c, "the image's entrypoint runs every container"
                commands.add(tuple(c["args"]))
    assert {c[0] for c in commands} == {"scheduler", "worker"}
    for command in commands:
        shown = subprocess.run(
            [sys.executable, "-m", "agentmesh", *command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, (command, shown.stderr)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_it_exposes_the_ports_the_manifests_use(overlay: str) -> None:
    (expose,) = [i for i in final_stage() if i.keyword == "EXPOSE"]
    exposed = {int(p) for p in expose.words()}
    for _, template in pod_templates(rendered(overlay)):
        for c in containers(template):
            assert {p["containerPort"] for p in c["ports"]} <= exposed
