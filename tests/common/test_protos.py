"""The contracts: generated code is current, and buf lint is clean."""

import filecmp
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load_gen_protos() -> ModuleType:
    """scripts/gen_protos.py as a module: scripts/ is a folder of commands, not a package."""
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_protos = _load_gen_protos()


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    gen_protos.generate(tmp_path)
    generated = sorted(p.name for p in (tmp_path / "agentmesh" / "v1").iterdir())
    committed = ROOT / "protos" / "agentmesh" / "v1"
    assert generated, "protoc generated nothing"
    for name in generated:
        assert filecmp.cmp(tmp_path / "agentmesh" / "v1" / name, committed / name, shallow=False), (
            f"protos/agentmesh/v1/{name} is stale: run `make protos`"
        )


def test_buf_lint_is_clean() -> None:
    buf = os.environ.get("AGENTMESH_BUF") or shutil.which("buf")
    assert buf, "buf is not installed: run the suite through `make test`, which installs it"
    result = subprocess.run([buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
