"""Translation between protobuf's well-known types and plain Python, for every part.

The scheduler, the workers and the clients all move JSON-like data through
`google.protobuf.Struct` and times through Duration and Timestamp; these
are the conversions they share, done the same way everywhere.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from agentmesh.errors import FieldViolation, InvalidArgument
from agentmesh.tiers import Difficulty, Tier
from agentmesh.usage import Usage
from agentmesh.v1 import plan_pb2, worker_pb2


def struct_to_dict(message: struct_pb2.Struct, field: str = "input") -> dict[str, Any]:
    """A Struct as plain Python; whole numbers come back as int (Struct keeps only doubles).

    InvalidArgument for what JSON cannot hold (NaN, infinities).
    """
    # A Struct is a JSON object: its values are what may hold whole numbers.
    return {key: _whole_numbers(value) for key, value in to_python(message, field).items()}


def to_python(message: struct_pb2.Struct | struct_pb2.Value, field: str) -> Any:
    """A Struct or Value as plain Python; InvalidArgument naming `field` for NaN or infinity."""
    try:
        return json_format.MessageToDict(message)
    except ValueError as error:
        raise InvalidArgument(
            f"{field} holds a value JSON cannot: {error}",
            [FieldViolation(field, "numbers must be finite")],
            reason="INVALID_NUMBER",
        ) from None


def _whole_numbers(data: Any) -> Any:
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    if isinstance(data, dict):
        return {k: _whole_numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_whole_numbers(v) for v in data]
    return data


def dict_to_struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if data:
        struct.update(data)
    return struct


def duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def usage_to_proto(usage: Usage) -> worker_pb2.Usage:
    return worker_pb2.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )


def usage_from_proto(usage: worker_pb2.Usage) -> Usage:
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )


def tier_to_proto(tier: Tier) -> worker_pb2.Tier.ValueType:
    return worker_pb2.Tier.ValueType(int(tier))


def tier_from_proto(value: worker_pb2.Tier.ValueType | int) -> Tier:
    """A tier from the wire; a number the contract does not define is UNSPECIFIED."""
    try:
        return Tier(value)
    except ValueError:
        return Tier.UNSPECIFIED


def difficulty_to_proto(difficulty: Difficulty) -> plan_pb2.Difficulty.ValueType:
    return plan_pb2.Difficulty.ValueType(int(difficulty))


def difficulty_from_proto(value: plan_pb2.Difficulty.ValueType | int) -> Difficulty:
    """A difficulty from the wire; a number the contract does not define is UNSPECIFIED."""
    try:
        return Difficulty(value)
    except ValueError:
        return Difficulty.UNSPECIFIED
