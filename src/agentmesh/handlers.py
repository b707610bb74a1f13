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

from agentmesh.errors import AgentmeshError
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
            async for item in method(self, request, context):
                yield item
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as error:
            await abort(context, error)

    return wrapper
