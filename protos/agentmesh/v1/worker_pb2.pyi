import datetime

from agentmesh.v1 import plan_pb2 as _plan_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_BUILTIN: _ClassVar[Tier]
    TIER_SMALL: _ClassVar[Tier]
    TIER_LARGE: _ClassVar[Tier]
TIER_UNSPECIFIED: Tier
TIER_BUILTIN: Tier
TIER_SMALL: Tier
TIER_LARGE: Tier

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cost_usd")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "address", "capabilities", "backend", "model", "tier", "capacity", "input_price_per_mtok", "output_price_per_mtok")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    backend: str
    model: str
    tier: Tier
    capacity: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., backend: _Optional[str] = ..., model: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., capacity: _Optional[int] = ..., input_price_per_mtok: _Optional[float] = ..., output_price_per_mtok: _Optional[float] = ...) -> None: ...

class WorkerHealth(_message.Message):
    __slots__ = ("in_flight", "capacity", "queue_length", "latency_estimate", "error_rate", "draining")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LATENCY_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    capacity: int
    queue_length: int
    latency_estimate: _duration_pb2.Duration
    error_rate: float
    draining: bool
    def __init__(self, in_flight: _Optional[int] = ..., capacity: _Optional[int] = ..., queue_length: _Optional[int] = ..., latency_estimate: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_rate: _Optional[float] = ..., draining: _Optional[bool] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("request_id", "subtask_id", "capability", "input", "difficulty", "attempt")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    subtask_id: str
    capability: str
    input: _struct_pb2.Struct
    difficulty: _plan_pb2.Difficulty
    attempt: int
    def __init__(self, request_id: _Optional[str] = ..., subtask_id: _Optional[str] = ..., capability: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., difficulty: _Optional[_Union[_plan_pb2.Difficulty, str]] = ..., attempt: _Optional[int] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("output", "usage", "model", "duration", "replayed")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    output: _struct_pb2.Struct
    usage: Usage
    model: str
    duration: _duration_pb2.Duration
    replayed: bool
    def __init__(self, output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., model: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...
