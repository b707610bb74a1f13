"""The contracts: generated code is current, and buf lint is clean."""

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_protos  # noqa: E402


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
