"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

#: The request (its id, and its tenant where it has one) and subtask being worked on,
#: set where the work starts; every log line written meanwhile carries them (asyncio
#: tasks inherit them).
REQUEST_ID: ContextVar[str | None] = ContextVar("agentmesh_request_id", default=None)
TENANT: ContextVar[str | None] = ContextVar("agentmesh_tenant", default=None)
SUBTASK_ID: ContextVar[str | None] = ContextVar("agentmesh_subtask_id", default=None)

#: The fields the context variables above fill in, in this order.
_CONTEXT = (("request_id", REQUEST_ID), ("tenant", TENANT), ("subtask_id", SUBTASK_ID))

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in _CONTEXT:
            value = var.get()
            if value is not None:
                line[key] = value
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def request_fields(request_id: str, tenant: str = "") -> dict[str, str]:
    """The fields that name a request in a log line: its id, and its tenant where it has
    one (two tenants may each have a request of the same id). For `extra=` where the line
    is written outside the request's own work; within it, `working_on` sets them."""
    return {"request_id": request_id, "tenant": tenant} if tenant else {"request_id": request_id}


def working_on(request_id: str, tenant: str = "") -> None:
    """Every log line written from here on in this context (and the tasks it starts)
    names this request, as `request_fields` does."""
    REQUEST_ID.set(request_id)
    TENANT.set(tenant or None)


def configure(level: str = "INFO") -> None:
    """Send JSON lines to stderr at the given level (once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
