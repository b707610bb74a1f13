"""error_for_code puts each keyword where the error class has a place for it."""

import pytest

from agentmesh.errors import (
    AgentmeshError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    error_for_code,
)
from agentmesh.scheduler.records import ErrorRecord

VIOLATION = FieldViolation("input.text", "empty")


def test_violations_go_to_an_invalid_argument() -> None:
    error = error_for_code("INVALID_ARGUMENT", "bad", violations=[VIOLATION], reason="EMPTY")
    assert isinstance(error, InvalidArgument)
    assert error.violations == (VIOLATION,) and error.reason == "EMPTY"


def test_a_retry_delay_goes_to_a_resource_exhausted_and_has_a_default() -> None:
    given = error_for_code("RESOURCE_EXHAUSTED", "full", retry_after=2.5)
    assert isinstance(given, ResourceExhausted) and given.retry_after == 2.5
    default = error_for_code("RESOURCE_EXHAUSTED", "full")
    assert isinstance(default, ResourceExhausted) and default.retry_after == 1.0


def test_a_class_without_a_place_for_them_ignores_violations_and_delay() -> None:
    error = error_for_code("UNAVAILABLE", "gone", violations=[VIOLATION], retry_after=3.0)
    assert type(error) is Unavailable and error.message == "gone"


def test_a_stored_error_with_violations_under_another_code_comes_back() -> None:
    # A record may hold violations under any code; it still turns back into its error.
    record = ErrorRecord("UNAVAILABLE", "gone", "NO_WORKER", {"a": "b"}, (VIOLATION,))
    error = record.to_error(capability="translate")
    assert type(error) is Unavailable
    assert error.reason == "NO_WORKER"
    assert error.metadata == {"a": "b", "capability": "translate"}


@pytest.mark.parametrize("code", ["DATA_LOSS", "OUT_OF_RANGE"])
def test_a_code_without_a_class_keeps_its_name_and_details(code: str) -> None:
    error = error_for_code(code, "m", reason="WHY", metadata={"k": "v"})
    assert type(error) is AgentmeshError
    assert (error.code_name, error.reason, error.metadata) == (code, "WHY", {"k": "v"})
