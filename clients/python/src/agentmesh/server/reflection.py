"""Server reflection that serves the agentmesh.v1 contracts with their comments.

grpcio-reflection builds its answers from the descriptor pool with
`FileDescriptor.CopyToProto`, which leaves out the `.proto` comments (the
source info), so `grpcurl describe` would show no documentation: not the
status codes an RPC returns, nor whether it may be retried. `make protos`
writes the contracts as a FileDescriptorSet with source info
(`agentmesh/v1/agentmesh.binpb`); this servicer answers as grpcio-reflection
does and puts those documented files in place of the bare ones.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from agentmesh.errors import AgentmeshError
from agentmesh.server.handlers import abort

#: Admits a reflection call by its metadata, or raises the AgentmeshError that refuses it.
Guard = Callable[[Any], object]


@functools.cache
def documented_files() -> dict[str, bytes]:
    """The agentmesh.v1 .proto files, serialized with their comments, by file name."""
    raw = resources.files("agentmesh.v1").joinpath("agentmesh.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(raw).file
    return {f.name: f.SerializeToString() for f in files if f.name.startswith("agentmesh/")}


class DocumentedReflection(reflection.aio.ReflectionServicer):
    """grpcio-reflection's servicer, answering with the documented agentmesh files.

    It overrides the two private methods (grpc_reflection/v1alpha/_base.py) that
    answer with files, which the library's stubs leave out. With a `guard`, the
    stream is admitted (or refused) by its metadata before its first message is read.
    """

    def __init__(self, service_names: Iterable[str], guard: Guard | None = None) -> None:
        super().__init__(service_names)
        self._guard = guard

    # The library's annotations make its async generator a coroutine; it is a generator.
    async def ServerReflectionInfo(  # type: ignore[override]
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        if self._guard is not None:
            try:
                self._guard(context.invocation_metadata())
            except AgentmeshError as error:
                await abort(context, error)
        responses = super().ServerReflectionInfo(request_iterator, context)
        async for response in responses:  # type: ignore[attr-defined]
            yield response

    def _file_by_filename(
        self, request: reflection_pb2.ServerReflectionRequest, filename: str
    ) -> reflection_pb2.ServerReflectionResponse:
        return _documented(super()._file_by_filename(request, filename))  # type: ignore[misc]

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, symbol: str
    ) -> reflection_pb2.ServerReflectionResponse:
        return _documented(super()._file_containing_symbol(request, symbol))  # type: ignore[misc]


def _documented(
    response: reflection_pb2.ServerReflectionResponse,
) -> reflection_pb2.ServerReflectionResponse:
    if response.HasField("file_descriptor_response"):
        files = response.file_descriptor_response.file_descriptor_proto
        documented = documented_files()
        for i, raw in enumerate(files):
            name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
            if name in documented:
                files[i] = documented[name]
    return response


def enable(server: aio.Server, service_names: Iterable[str], guard: Guard | None = None) -> None:
    """Serve reflection for these services (and reflection itself) on an aio server; with
    a `guard`, only to the calls it admits."""
    names = (*service_names, reflection.SERVICE_NAME)
    servicer = DocumentedReflection(names, guard)
    # The stubs leave this generated function's arguments unannotated.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
