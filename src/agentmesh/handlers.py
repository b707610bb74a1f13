"""Error handling shared by every agentmesh servicer.

A handler raises AgentmeshError subclasses; these decorators turn them
into statuses with typed details, and turn anything else into INTERNAL with
a log line, so that no call ever ends as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from grpc import aio

from agentmesh.errors import AgentmeshError, FieldViolation, InvalidArgument
from agentmesh.status import to_grpc_status

log = logging.getLogger(__name__)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def abort(context: aio.ServicerContext[Any, Any], error: BaseException) -> None:
    """Abort the call with the status for error (INTERNAL for what is not ours)."""
    if not isinstance(error, AgentmeshError):
        log.error("unexpected error in handler", exc_info=error)
        error = AgentmeshError(f"internal error: {type(error).__name__}", cause=error)
    await context.abort_with_status(to_grpc_status(error))


def unary(
    method: Callable[[S, Req, aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[S, Req, aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: aio.ServicerContext[Any, Any]) -> Resp:
        try:
            if isinstance(request, Undecodable):
                raise request.refuse()
            return await method(self, request, context)
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as error:
            await abort(context, error)
            raise  # unreachable: abort raises

    return wrapper


def streaming(
    method: Callable[[S, Req, aio.ServicerContext[Any, Any]], AsyncIterator[Resp]],
) -> Callable[[S, Req, aio.ServicerContext[Any, Any]], AsyncIterator[Resp]]:
    @functools.wraps(method)
    async def wrapper(
        self: S, request: Req, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Resp]:
        try:
            if isinstance(request, Undecodable):
                raise request.refuse()
            async for item in method(self, request, context):
                yield item
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as error:
            await abort(context, error)

    return wrapper


class Undecodable:
    """Stands for a request message whose bytes did not decode."""

    def __init__(self, error: str) -> None:
        self.error = error

    def refuse(self) -> InvalidArgument:
        return InvalidArgument(
            f"the request message could not be decoded: {self.error}",
            [FieldViolation("request", "a well-formed agentmesh.v1 message")],
            reason="UNDECODABLE",
        )


class RejectUndecodable(aio.ServerInterceptor):  # type: ignore[misc]
    """Lets agentmesh handlers refuse undecodable messages with INVALID_ARGUMENT.

    gRPC decodes a request before any handler runs and answers a decode
    error with UNKNOWN; this wraps the decoder of agentmesh's own methods so
    the handler receives an `Undecodable` instead, and refuses it.
    """

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.request_deserializer is None
            or not handler_call_details.method.startswith("/agentmesh.v1.")
        ):
            return handler
        decode = handler.request_deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except Exception as error:  # protobuf's DecodeError and its kin
                return Undecodable(str(error))

        return handler._replace(request_deserializer=tolerant)
