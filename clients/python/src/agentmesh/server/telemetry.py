"""Tracing: OpenTelemetry set up from the standard OTEL_* variables.

Tracing is on when an exporter is configured: `OTEL_TRACES_EXPORTER`
(`otlp` or `console`) or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Otherwise no SDK is installed and
every span is the API's non-recording span: tracing then costs a few
attribute-less calls per subtask. The exporter, batching and sampling read
their own OTEL_* settings (`OTEL_EXPORTER_OTLP_INSECURE`,
`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER`, ...).

Trace context crosses processes as W3C `traceparent` in gRPC metadata.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

#: The instrumentation scope of every agentmesh span.
TRACER_NAME = "agentmesh"

# Attribute names: OpenTelemetry's RPC and GenAI conventions, and agentmesh's own.
REQUEST_ID = "agentmesh.request_id"
SUBTASK_ID = "agentmesh.subtask_id"
CAPABILITY = "agentmesh.capability"
WORKER_ID = "agentmesh.worker_id"
ATTEMPT = "agentmesh.attempt"
WORKFLOW = "agentmesh.workflow"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def configure_tracing(
    service_name: str, env: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """Install an SDK tracer provider when an exporter is configured; None otherwise."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    choice = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if choice == "none" or (not choice and not endpoint):
        return None
    exporter: SpanExporter
    if choice == "console":
        exporter = ConsoleSpanExporter()
    elif choice in ("", "otlp"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={choice!r} is not supported; use otlp or console")
    # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({"service.name": service_name})
    if env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource.create({"service.name": env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    recording.cache_clear()
    return provider


@contextlib.contextmanager
def tracing(service_name: str) -> Iterator[None]:
    """Tracing for a server process (when configured), flushed when it ends."""
    provider = configure_tracing(service_name)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()


@functools.cache
def recording() -> bool:
    """Whether spans are recorded: a tracer provider is installed (`configure_tracing`).

    The hot paths make no span and no trace context at all when it is not.
    Decided once, as asking OpenTelemetry reads the environment each time;
    `configure_tracing` decides again, and so must code that installs a
    provider of its own (`recording.cache_clear()`).
    """
    return not isinstance(
        trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def span(name: str, **options: Any) -> contextlib.AbstractContextManager[trace.Span]:
    """`tracer().start_as_current_span(name, **options)`, or a no-op span (nothing made)
    when tracing is off."""
    if not recording():
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return tracer().start_as_current_span(name, **options)


def outgoing_metadata() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata (W3C traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def incoming_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> context.Context:
    """The trace context a caller sent in its gRPC metadata."""
    carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
    return propagate.extract(carrier)


def start_server_span(
    full_method: str, metadata: Iterable[tuple[str, str | bytes]] | None, **attributes: Any
) -> trace.Span:
    """A SERVER span for one RPC ("package.Service/Method"), child of the caller's context.

    Not made current: for a streaming handler, use it with `trace.use_span(span,
    end_on_exit=False)` around what should become its children, and end it when
    the stream ends.
    """
    service, _, method = full_method.rpartition("/")
    return tracer().start_span(
        full_method,
        context=incoming_context(metadata),
        kind=trace.SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            **attributes,
        },
    )


@contextlib.contextmanager
def server_span(
    full_method: str, metadata: Iterable[tuple[str, str | bytes]] | None, **attributes: Any
) -> Iterator[trace.Span]:
    """`start_server_span`, current for the duration of the block (a no-op span when
    tracing is off)."""
    if not recording():
        yield trace.INVALID_SPAN
        return
    with trace.use_span(
        start_server_span(full_method, metadata, **attributes), end_on_exit=True
    ) as span:
        yield span
