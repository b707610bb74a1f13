"""KEDA's external scaler contract: kept as KEDA publishes it, and its generated code current."""

import filecmp
import hashlib
from pathlib import Path

from tests.common.test_protos import gen_protos

ROOT = Path(__file__).resolve().parents[2]
KEDA = ROOT / "protos" / "agentmesh" / "keda"
#: kedacore/keda, pkg/scalers/externalscaler/externalscaler.proto at 125494be (README.md there).
PUBLISHED_SHA256 = "0e1c84a7ee1d4745eefe1fd7d16e2cbbd02763dc0cfc4c4c37d92d026deb9253"


def test_the_contract_is_keda_s_unchanged() -> None:
    digest = hashlib.sha256((KEDA / "externalscaler.proto").read_bytes()).hexdigest()
    assert digest == PUBLISHED_SHA256, "externalscaler.proto differs from KEDA's published file"
    assert PUBLISHED_SHA256 in (KEDA / "README.md").read_text()


def test_its_generated_code_is_not_stale(tmp_path: Path) -> None:
    gen_protos.generate(tmp_path)
    generated = sorted(p.name for p in (tmp_path / "agentmesh" / "keda").iterdir())
    assert "externalscaler_pb2_grpc.py" in generated
    for name in generated:
        assert filecmp.cmp(tmp_path / "agentmesh" / "keda" / name, KEDA / name, shallow=False), (
            f"protos/agentmesh/keda/{name} is stale: run `make protos`"
        )
