"""Generate the Python code (messages, .pyi stubs, gRPC stubs) for protos/.

The stubs come from mypy-protobuf: `protoc-gen-mypy` for the messages
(`_pb2.pyi`) and `protoc-gen-mypy_grpc` for the services (`_pb2_grpc.pyi`,
the stubs and servicers for both grpc and grpc.aio). protoc's own `--pyi_out`
is not used: its stubs fail mypy's strict mode (bare `Mapping`) and type an
enum field as the enum class, which no int converts to; mypy-protobuf's take
`Enum.ValueType`, an int at run time.

Also writes `agentmesh/v1/agentmesh.binpb`, the contracts as a
FileDescriptorSet with their comments (source info), which server
reflection serves so that `grpcurl describe` shows the documentation.

Run by `make protos`; the test suite calls `generate` into a scratch folder
to prove that the committed code is not stale.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"


#: The folders of .proto files: agentmesh.v1, and KEDA's external scaler contract as KEDA
#: publishes it (agentmesh/keda/README.md), which the scheduler serves.
PROTO_DIRS = ("v1", "keda")


def proto_files() -> list[Path]:
    return sorted(p for d in PROTO_DIRS for p in (PROTO_ROOT / "agentmesh" / d).glob("*.proto"))


def plugin(name: str) -> Path:
    """A protoc plugin installed beside this interpreter (the venv need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    found = beside if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: install the dev extra (mypy-protobuf)")
    return Path(found)


def generate(out_dir: Path) -> None:
    """Write the generated code for every .proto under out_dir/agentmesh/{v1,keda}."""
    include = Path(protoc.__file__).parent / "_proto"  # the well-known types
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--mypy_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out_dir}",
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out_dir / 'agentmesh' / 'v1' / 'agentmesh.binpb'}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT)
