"""How model providers' failures become agentmesh errors, shared by both SDKs.

HTTP statuses go through one table (`STATUS_ERRORS`); timeouts, unreachable
servers and other SDK failures have a function each. An API key never
appears in an error message: authentication failures name the environment
variable that holds the key, and any provider text is redacted.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentmesh.errors import (
    AgentmeshError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

if TYPE_CHECKING:
    from agentmesh.agents.model_config import ModelConfig

DEFAULT_RETRY_AFTER = 5.0
"""Seconds to wait after a rate limit whose answer did not say how long."""

MAX_RETRY_AFTER = 300.0
"""A provider's retry delay is capped at this many seconds."""

_MAX_DETAIL = 300  # characters of a provider's error text kept in a message


@dataclass(frozen=True)
class StatusRule:
    """How one HTTP status from a provider becomes an agentmesh error."""

    error: type[AgentmeshError]
    reason: str


STATUS_ERRORS: Mapping[int, StatusRule] = {
    400: StatusRule(InvalidArgument, "MODEL_BAD_REQUEST"),
    401: StatusRule(FailedPrecondition, "MODEL_AUTH"),
    403: StatusRule(FailedPrecondition, "MODEL_AUTH"),
    404: StatusRule(FailedPrecondition, "MODEL_NOT_FOUND"),
    408: StatusRule(DeadlineExceeded, "MODEL_TIMEOUT"),
    409: StatusRule(Unavailable, "MODEL_UNAVAILABLE"),
    413: StatusRule(InvalidArgument, "MODEL_BAD_REQUEST"),
    422: StatusRule(InvalidArgument, "MODEL_BAD_REQUEST"),
    429: StatusRule(ResourceExhausted, "MODEL_RATE_LIMITED"),
}
"""Provider HTTP statuses and the errors they become; any other 5xx is UNAVAILABLE
(MODEL_UNAVAILABLE), anything else INTERNAL (MODEL_ERROR)."""


def status_error(
    config: ModelConfig,
    status: int,
    headers: Mapping[str, str],
    detail: str,
    secret: str,
    *,
    now: float | None = None,
) -> AgentmeshError:
    """The agentmesh error for a provider's HTTP error answer."""
    rule = STATUS_ERRORS.get(status)
    if rule is None:
        rule = (
            StatusRule(Unavailable, "MODEL_UNAVAILABLE")
            if status >= 500
            else StatusRule(AgentmeshError, "MODEL_ERROR")
        )
    metadata = {"provider": config.provider, "model": config.model, "http_status": str(status)}
    if rule.reason == "MODEL_AUTH":
        # The provider's text is dropped: some echo part of the key back.
        message = (
            f"{config.where} refused the API key (HTTP {status}); "
            f"check the key in the environment variable {config.api_key_env}"
        )
        return FailedPrecondition(message, reason=rule.reason, metadata=metadata)
    text = redact(detail, secret)
    if rule.reason == "MODEL_NOT_FOUND":
        message = (
            f"{config.where} has no model {config.model!r} or path (HTTP 404); check "
            f"AGENTMESH_MODEL and AGENTMESH_MODEL_BASE_URL: {text}"
        )
    else:
        message = (
            f"{config.provider} model {config.model!r} at {config.where}: HTTP {status}: {text}"
        )
    if rule.error is ResourceExhausted:
        return ResourceExhausted(
            message,
            retry_after=retry_after(headers, now),
            reason=rule.reason,
            metadata=metadata,
        )
    return rule.error(message, reason=rule.reason, metadata=metadata)


def timeout_error(config: ModelConfig) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"{config.provider} model {config.model!r} at {config.where} did not answer within "
        f"{config.timeout:g} s (AGENTMESH_MODEL_TIMEOUT)",
        reason="MODEL_TIMEOUT",
        metadata={"provider": config.provider, "model": config.model},
    )


def connection_error(config: ModelConfig) -> Unavailable:
    return Unavailable(
        f"cannot connect to {config.where} for {config.provider} model {config.model!r}",
        reason="MODEL_UNREACHABLE",
        metadata={"provider": config.provider, "model": config.model},
    )


def sdk_error(config: ModelConfig, error: Exception, secret: str) -> AgentmeshError:
    """Any other SDK failure: INTERNAL, naming its class."""
    return AgentmeshError(
        f"{config.provider} SDK failed calling {config.model!r} at {config.where}: "
        f"{type(error).__name__}: {redact(str(error), secret)}",
        reason="MODEL_ERROR",
        metadata={"provider": config.provider, "model": config.model},
    )


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return _clamp(float(millis) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return _clamp(float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        return _clamp(when - (time.time() if now is None else now))
    return DEFAULT_RETRY_AFTER


def _clamp(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def redact(text: str, secret: str) -> str:
    """`text` shortened, with the secret (if any) blotted out."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return excerpt(text, _MAX_DETAIL)


def excerpt(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
