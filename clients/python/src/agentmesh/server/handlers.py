"""Error handling shared by every agentmesh servicer.

A handler raises AgentmeshError subclasses; these decorators turn them
into statuses with typed details, and turn anything else into INTERNAL with
a log line, so that no call ever ends as UNKNOWN. Messages that do not
decode, or that hold an enum value the contract does not define, never
reach a handler's logic: they are refused with INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc import aio

from agentmesh.errors import AgentmeshError, FieldViolation, InvalidArgument
from agentmesh.status import to_grpc_status

log = logging.getLogger(__name__)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


def ours(error: BaseException) -> AgentmeshError:
    """The error as an agentmesh error: INTERNAL, logged, for what is not ours."""
    if isinstance(error, AgentmeshError):
        return error
    log.error("unexpected error in handler", exc_info=error)
    return AgentmeshError(f"internal error: {type(error).__name__}", cause=error)


async def abort(context: aio.ServicerContext[Any, Any], error: BaseException) -> None:
    """Abort the call with the status for error (INTERNAL for what is not ours)."""
    await context.abort_with_status(to_grpc_status(ours(error)))


def unary(
    method: Callable[[S, Req, aio.ServicerContext[Any, Any]], Awaitable[Resp]],
) -> Callable[[S, Req, aio.ServicerContext[Any, Any]], Awaitable[Resp]]:
    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: aio.ServicerContext[Any, Any]) -> Resp:
        try:
            if isinstance(request, Undecodable):
                raise _refused(self, method.__name__, request, context)
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
                raise _refused(self, method.__name__, request, context)
            async for item in method(self, request, context):
                yield item
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as error:
            await abort(context, error)

    return wrapper


def _refused(
    servicer: object, method: str, request: Undecodable, context: aio.ServicerContext[Any, Any]
) -> InvalidArgument:
    """The refusal of a request the handler never sees, told to the servicer's
    `call_refused(method, error)` if it has one (so that it can count it). A servicer's
    `admit_call(method, context)`, if it has one, checks the call's credentials first and
    raises to refuse them: a caller without them learns nothing from the message's fault."""
    admit = getattr(servicer, "admit_call", None)
    if admit is not None:
        admit(method, context)
    error = request.refuse()
    observe = getattr(servicer, "call_refused", None)
    if observe is not None:
        observe(method, error)
    return error


class Undecodable:
    """Stands for a request message that did not decode, or that the contract refuses."""

    def __init__(self, error: str, refusal: InvalidArgument | None = None) -> None:
        self.error = error
        self._refusal = refusal

    def refuse(self) -> InvalidArgument:
        return self._refusal or InvalidArgument(
            f"the request message could not be decoded: {self.error}",
            [FieldViolation("request", "a well-formed agentmesh.v1 message")],
            reason="UNDECODABLE",
        )


def enum_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """The enum fields of a message (at any depth) holding a value their enum does not define.

    proto3 enums are open: a client may send any int32 and protobuf keeps it.
    Well-known types (Struct, Duration, ...) hold no enums and are not walked.
    """
    violations: list[FieldViolation] = []
    for field, value in message.ListFields():
        # An enum field has its enum_type, a message field its message_type.
        enum_type, message_type = field.enum_type, field.message_type
        if field.type == FieldDescriptor.TYPE_ENUM and enum_type is not None:
            path = f"{prefix}{field.name}"
            values = value if field.is_repeated else [value]
            for number in values:
                if number not in enum_type.values_by_number:
                    names = ", ".join(v.name for v in enum_type.values)
                    violations.append(
                        FieldViolation(path, f"{number} is not a {enum_type.name}: {names}")
                    )
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and message_type is not None
            and _holds_enums(message_type)
        ):
            path = f"{prefix}{field.name}"
            if message_type.GetOptions().map_entry:
                items = [(f"{path}.{k}.", v) for k, v in value.items() if isinstance(v, Message)]
            elif field.is_repeated:
                items = [(f"{path}[{i}].", v) for i, v in enumerate(value)]
            else:
                items = [(f"{path}.", value)]
            for where, item in items:
                violations.extend(enum_violations(item, where))
    return violations


@functools.cache
def _holds_enums(descriptor: Descriptor) -> bool:
    """Whether a message type has an enum field at any depth (well-known types hold none):
    those that do not are not walked, which keeps the check off most of a request."""

    def reach(message_type: Descriptor, seen: frozenset[str]) -> bool:
        if message_type.full_name.startswith("google.protobuf.") or message_type.full_name in seen:
            return False
        inner = seen | {message_type.full_name}
        return any(
            field.type == FieldDescriptor.TYPE_ENUM
            or (field.message_type is not None and reach(field.message_type, inner))
            for field in message_type.fields
        )

    return reach(descriptor, frozenset())


def _refuse_unknown_enums(request: Message) -> Message | Undecodable:
    violations = enum_violations(request)
    if not violations:
        return request
    return Undecodable(
        "unknown enum value",
        InvalidArgument(
            "the request holds an enum value the contract does not define: "
            + "; ".join(f"{v.field}: {v.description}" for v in violations[:5]),
            violations,
            reason="UNKNOWN_ENUM_VALUE",
        ),
    )


class RejectUndecodable(aio.ServerInterceptor):
    """Lets agentmesh handlers refuse undecodable messages with INVALID_ARGUMENT.

    gRPC decodes a request before any handler runs and answers a decode
    error with UNKNOWN; this wraps the decoder of agentmesh's own methods so
    the handler receives an `Undecodable` instead, and refuses it. A message
    with an enum value outside its enum (a priority of 99) is refused the
    same way, naming the field.
    """

    def __init__(self) -> None:
        # Each method's handler and its wrapped form, made once rather than for every call.
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.request_deserializer is None
            or not handler_call_details.method.startswith("/agentmesh.v1.")
        ):
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, _tolerant(handler))
        return cached[1]


def _tolerant(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler, with a decoder that hands over an `Undecodable` instead of failing."""
    decode = handler.request_deserializer
    assert decode is not None

    def tolerant(data: bytes) -> Message | Undecodable:
        try:
            return _refuse_unknown_enums(decode(data))
        except Exception as error:  # protobuf's DecodeError and its kin
            return Undecodable(str(error))

    # grpc's method handlers are namedtuples, which its stubs do not say.
    return handler._replace(request_deserializer=tolerant)  # type: ignore[attr-defined, no-any-return]
