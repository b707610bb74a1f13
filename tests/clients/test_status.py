"""Errors survive the trip to a google.rpc.Status and back, typed details included."""

import pytest

from agentmesh.errors import (
    ERRORS_BY_CODE,
    AgentmeshError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    error_for_code,
)
from agentmesh.status import error_from_status, to_status_proto


def roundtrip(error: AgentmeshError) -> AgentmeshError:
    return error_from_status(to_status_proto(error))


def test_invalid_argument_keeps_field_violations() -> None:
    back = roundtrip(
        InvalidArgument("bad", [FieldViolation("input.text", "empty")], reason="EMPTY_INPUT")
    )
    assert isinstance(back, InvalidArgument)
    assert back.violations == (FieldViolation("input.text", "empty"),)
    assert back.reason == "EMPTY_INPUT"


def test_resource_exhausted_keeps_retry_delay() -> None:
    back = roundtrip(ResourceExhausted("full", retry_after=1.5))
    assert isinstance(back, ResourceExhausted)
    assert back.retry_after == pytest.approx(1.5)


def test_error_info_metadata() -> None:
    back = roundtrip(Unavailable("none", reason="NO_WORKER", metadata={"capability": "translate"}))
    assert back.metadata == {"capability": "translate"}
    assert back.message == "none"


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_every_code_maps_to_its_class(code: str) -> None:
    error = error_for_code(code, "m")
    assert error.code_name == code
    assert roundtrip(error).code_name == code


def test_a_code_without_a_class_keeps_its_name() -> None:
    assert roundtrip(error_for_code("DATA_LOSS", "m")).code_name == "DATA_LOSS"
