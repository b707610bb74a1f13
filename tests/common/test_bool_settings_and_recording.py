"""Bool settings read from the environment, and `telemetry.recording()`, the switch that
spares the hot paths every span and trace context when tracing is off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from agentmesh.agents.config import WorkerConfig
from agentmesh.server import settings, telemetry

VARIABLE = "AGENTMESH_EXECUTE_STREAM"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[(raw, True) for raw in ("1", "true", "yes", "on", "TRUE", "Yes", " on ")],
        *[(raw, False) for raw in ("0", "false", "no", "off", "FALSE", "Off", "no\n")],
    ],
)
def test_a_bool_setting_takes_the_usual_words(raw: str, value: bool) -> None:
    assert settings.convert("bool", raw, VARIABLE) is value
    assert WorkerConfig.from_env({VARIABLE: raw}).execute_stream is value


def test_a_bool_setting_left_unset_or_empty_keeps_its_default() -> None:
    assert WorkerConfig.from_env({}).execute_stream is True
    assert WorkerConfig.from_env({VARIABLE: ""}).execute_stream is True


@pytest.mark.parametrize("raw", ["2", "-1", "y", "n", "enabled", "truthy", "o n", "1.0"])
def test_a_bool_setting_refuses_other_words_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=rf"{VARIABLE}={raw!r} is not a valid bool"):
        WorkerConfig.from_env({VARIABLE: raw})


@pytest.fixture
def no_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No global tracer provider, as in a process without tracing; the global one (set only
    once per process by OpenTelemetry) comes back afterwards, and `recording()`, which
    decides once, decides again on each side."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    telemetry.recording.cache_clear()
    yield
    telemetry.recording.cache_clear()


def test_recording_is_off_without_a_tracer_provider(no_provider: None) -> None:
    assert telemetry.recording() is False
    assert telemetry.configure_tracing("test", {}) is None  # no exporter: none installed
    assert telemetry.recording() is False
    with telemetry.server_span("agentmesh.v1.WorkerService/Execute", None) as span:
        assert span is trace.INVALID_SPAN
        assert not span.is_recording()


def test_recording_is_on_once_an_sdk_provider_is_installed(no_provider: None) -> None:
    provider = telemetry.configure_tracing("test", {"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(provider, TracerProvider)
    try:
        assert telemetry.recording() is True
        with telemetry.server_span(
            "agentmesh.v1.WorkerService/Execute", None, **{telemetry.REQUEST_ID: "r1"}
        ) as span:
            assert span.is_recording()
            assert span.attributes is not None  # type: ignore[attr-defined]
            assert span.attributes[telemetry.REQUEST_ID] == "r1"  # type: ignore[attr-defined]
    finally:
        provider.shutdown()


def test_recording_is_off_with_the_no_op_provider(no_provider: None) -> None:
    trace.set_tracer_provider(trace.NoOpTracerProvider())
    telemetry.recording.cache_clear()  # as code installing a provider of its own must
    assert telemetry.recording() is False
