"""The agentmesh exception tree.

Each error knows the gRPC status code it stands for; `agentmesh.status`
maps it to a status with typed details in one place, and back again on the
client side.

    AgentmeshError                      INTERNAL
    ├── InvalidArgument                 INVALID_ARGUMENT (field violations)
    ├── NotFound                        NOT_FOUND
    ├── AlreadyExists                   ALREADY_EXISTS
    ├── Unavailable                     UNAVAILABLE (the capability, if any)
    ├── ResourceExhausted               RESOURCE_EXHAUSTED (retry delay)
    ├── DeadlineExceeded                DEADLINE_EXCEEDED
    ├── Cancelled                       CANCELLED
    ├── Unimplemented                   UNIMPLEMENTED
    ├── PermissionDenied                PERMISSION_DENIED
    ├── Unauthenticated                 UNAUTHENTICATED
    ├── FailedPrecondition              FAILED_PRECONDITION
    └── Aborted                         ABORTED
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: where it is and what is wrong with it."""

    field: str
    description: str


class ErrorDetails(TypedDict, total=False):
    """The keywords every AgentmeshError takes, passed on by the subclasses."""

    reason: str
    metadata: dict[str, str] | None
    cause: BaseException | None


class AgentmeshError(Exception):
    """Root of every error agentmesh raises on purpose."""

    code_name = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: A short UPPER_SNAKE_CASE cause, sent as google.rpc.ErrorInfo.reason.
        self.reason = reason
        #: Extra facts sent as ErrorInfo.metadata (such as the capability).
        self.metadata = dict(metadata or {})
        #: The lower-level exception behind this one, if any.
        self.cause = cause

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed when made again."""
        return self.code_name in RETRYABLE_CODES


class InvalidArgument(AgentmeshError):
    code_name = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        **details: Unpack[ErrorDetails],
    ) -> None:
        super().__init__(message, **details)
        self.violations = tuple(violations)


class NotFound(AgentmeshError):
    code_name = "NOT_FOUND"


class AlreadyExists(AgentmeshError):
    code_name = "ALREADY_EXISTS"


class Unavailable(AgentmeshError):
    code_name = "UNAVAILABLE"


class ResourceExhausted(AgentmeshError):
    code_name = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, retry_after: float = 1.0, **details: Unpack[ErrorDetails]
    ) -> None:
        super().__init__(message, **details)
        #: Seconds the caller should wait before trying again.
        self.retry_after = retry_after


class DeadlineExceeded(AgentmeshError):
    code_name = "DEADLINE_EXCEEDED"


class Cancelled(AgentmeshError):
    code_name = "CANCELLED"


class Unimplemented(AgentmeshError):
    code_name = "UNIMPLEMENTED"


class PermissionDenied(AgentmeshError):
    code_name = "PERMISSION_DENIED"


class Unauthenticated(AgentmeshError):
    code_name = "UNAUTHENTICATED"


class FailedPrecondition(AgentmeshError):
    code_name = "FAILED_PRECONDITION"


class Aborted(AgentmeshError):
    """Work given up before it ran, because work it depended on did not succeed (a plan
    fragment's step whose predecessor failed: reason FRAGMENT_BROKEN)."""

    code_name = "ABORTED"


#: Codes after which the same call may succeed on another try (or worker).
RETRYABLE_CODES = frozenset(
    {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL"}
)

ERRORS_BY_CODE: dict[str, type[AgentmeshError]] = {
    cls.code_name: cls
    for cls in (
        AgentmeshError,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Unavailable,
        ResourceExhausted,
        DeadlineExceeded,
        Cancelled,
        Unimplemented,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        Aborted,
    )
}


def error_for_code(
    code_name: str,
    message: str,
    *,
    violations: Sequence[FieldViolation] = (),
    retry_after: float | None = None,
    **details: Unpack[ErrorDetails],
) -> AgentmeshError:
    """An error of the class for a status code name.

    The violations go to an InvalidArgument and the retry delay (when given)
    to a ResourceExhausted; the other classes have no place for them. A code
    without a class of its own (DATA_LOSS, OUT_OF_RANGE, ...) gives an
    AgentmeshError that still carries that code.
    """
    cls = ERRORS_BY_CODE.get(code_name)
    if cls is InvalidArgument:
        return InvalidArgument(message, violations, **details)
    if cls is ResourceExhausted and retry_after is not None:
        return ResourceExhausted(message, retry_after, **details)
    if cls is not None:
        return cls(message, **details)
    error = AgentmeshError(message, **details)
    error.code_name = code_name
    return error
