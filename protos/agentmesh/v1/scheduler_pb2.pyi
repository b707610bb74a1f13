import datetime

from agentmesh.v1 import plan_pb2 as _plan_pb2
from agentmesh.v1 import worker_pb2 as _worker_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_RUNNING: _ClassVar[RequestState]
    REQUEST_STATE_SUCCEEDED: _ClassVar[RequestState]
    REQUEST_STATE_FAILED: _ClassVar[RequestState]
    REQUEST_STATE_CANCELLED: _ClassVar[RequestState]

class SubtaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_STATE_UNSPECIFIED: _ClassVar[SubtaskState]
    SUBTASK_STATE_PENDING: _ClassVar[SubtaskState]
    SUBTASK_STATE_QUEUED: _ClassVar[SubtaskState]
    SUBTASK_STATE_RUNNING: _ClassVar[SubtaskState]
    SUBTASK_STATE_SUCCEEDED: _ClassVar[SubtaskState]
    SUBTASK_STATE_FAILED: _ClassVar[SubtaskState]
    SUBTASK_STATE_SKIPPED: _ClassVar[SubtaskState]
    SUBTASK_STATE_CANCELLED: _ClassVar[SubtaskState]

class SubtaskEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_EVENT_KIND_UNSPECIFIED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_STARTED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_SUCCEEDED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_RETRIED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_FAILED: _ClassVar[SubtaskEventKind]
    SUBTASK_EVENT_KIND_SKIPPED: _ClassVar[SubtaskEventKind]

class HeartbeatDirective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEARTBEAT_DIRECTIVE_UNSPECIFIED: _ClassVar[HeartbeatDirective]
    HEARTBEAT_DIRECTIVE_REGISTER: _ClassVar[HeartbeatDirective]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_ACTIVE: _ClassVar[WorkerState]
    WORKER_STATE_DRAINING: _ClassVar[WorkerState]
    WORKER_STATE_EJECTED: _ClassVar[WorkerState]
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_RUNNING: RequestState
REQUEST_STATE_SUCCEEDED: RequestState
REQUEST_STATE_FAILED: RequestState
REQUEST_STATE_CANCELLED: RequestState
SUBTASK_STATE_UNSPECIFIED: SubtaskState
SUBTASK_STATE_PENDING: SubtaskState
SUBTASK_STATE_QUEUED: SubtaskState
SUBTASK_STATE_RUNNING: SubtaskState
SUBTASK_STATE_SUCCEEDED: SubtaskState
SUBTASK_STATE_FAILED: SubtaskState
SUBTASK_STATE_SKIPPED: SubtaskState
SUBTASK_STATE_CANCELLED: SubtaskState
SUBTASK_EVENT_KIND_UNSPECIFIED: SubtaskEventKind
SUBTASK_EVENT_KIND_STARTED: SubtaskEventKind
SUBTASK_EVENT_KIND_SUCCEEDED: SubtaskEventKind
SUBTASK_EVENT_KIND_RETRIED: SubtaskEventKind
SUBTASK_EVENT_KIND_FAILED: SubtaskEventKind
SUBTASK_EVENT_KIND_SKIPPED: SubtaskEventKind
HEARTBEAT_DIRECTIVE_UNSPECIFIED: HeartbeatDirective
HEARTBEAT_DIRECTIVE_REGISTER: HeartbeatDirective
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_ACTIVE: WorkerState
WORKER_STATE_DRAINING: WorkerState
WORKER_STATE_EJECTED: WorkerState

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Subtask(_message.Message):
    __slots__ = ("id", "capability", "state", "output", "worker_id", "model", "attempts", "duration", "usage", "reason", "error", "tier")
    ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    id: str
    capability: str
    state: SubtaskState
    output: _struct_pb2.Struct
    worker_id: str
    model: str
    attempts: int
    duration: _duration_pb2.Duration
    usage: _worker_pb2.Usage
    reason: str
    error: Error
    tier: _worker_pb2.Tier
    def __init__(self, id: _Optional[str] = ..., capability: _Optional[str] = ..., state: _Optional[_Union[SubtaskState, str]] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., worker_id: _Optional[str] = ..., model: _Optional[str] = ..., attempts: _Optional[int] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., usage: _Optional[_Union[_worker_pb2.Usage, _Mapping]] = ..., reason: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., tier: _Optional[_Union[_worker_pb2.Tier, str]] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("request_id", "workflow", "state", "plan", "subtasks", "answer", "usage", "error", "created_at", "finished_at", "cost_budget_usd")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    COST_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow: str
    state: RequestState
    plan: _plan_pb2.Plan
    subtasks: _containers.RepeatedCompositeFieldContainer[Subtask]
    answer: _struct_pb2.Struct
    usage: _worker_pb2.Usage
    error: Error
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cost_budget_usd: float
    def __init__(self, request_id: _Optional[str] = ..., workflow: _Optional[str] = ..., state: _Optional[_Union[RequestState, str]] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., subtasks: _Optional[_Iterable[_Union[Subtask, _Mapping]]] = ..., answer: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., usage: _Optional[_Union[_worker_pb2.Usage, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cost_budget_usd: _Optional[float] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("request_id", "workflow", "plan", "goal", "input", "priority", "cost_budget_usd")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    COST_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow: str
    plan: _plan_pb2.Plan
    goal: str
    input: _struct_pb2.Struct
    priority: _plan_pb2.Priority
    cost_budget_usd: float
    def __init__(self, request_id: _Optional[str] = ..., workflow: _Optional[str] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., goal: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_plan_pb2.Priority, str]] = ..., cost_budget_usd: _Optional[float] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: Request
    def __init__(self, request: _Optional[_Union[Request, _Mapping]] = ...) -> None: ...

class StreamSubmitRequest(_message.Message):
    __slots__ = ("request_id", "workflow", "plan", "goal", "input", "priority", "cost_budget_usd")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    COST_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow: str
    plan: _plan_pb2.Plan
    goal: str
    input: _struct_pb2.Struct
    priority: _plan_pb2.Priority
    cost_budget_usd: float
    def __init__(self, request_id: _Optional[str] = ..., workflow: _Optional[str] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., goal: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_plan_pb2.Priority, str]] = ..., cost_budget_usd: _Optional[float] = ...) -> None: ...

class SubtaskEvent(_message.Message):
    __slots__ = ("subtask_id", "capability", "kind", "worker_id", "attempt", "message")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    capability: str
    kind: SubtaskEventKind
    worker_id: str
    attempt: int
    message: str
    def __init__(self, subtask_id: _Optional[str] = ..., capability: _Optional[str] = ..., kind: _Optional[_Union[SubtaskEventKind, str]] = ..., worker_id: _Optional[str] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StreamSubmitResponse(_message.Message):
    __slots__ = ("request_id", "plan", "subtask", "result")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    plan: _plan_pb2.Plan
    subtask: SubtaskEvent
    result: Request
    def __init__(self, request_id: _Optional[str] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., subtask: _Optional[_Union[SubtaskEvent, _Mapping]] = ..., result: _Optional[_Union[Request, _Mapping]] = ...) -> None: ...

class GetRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: Request
    def __init__(self, request: _Optional[_Union[Request, _Mapping]] = ...) -> None: ...

class DecomposeRequest(_message.Message):
    __slots__ = ("workflow", "plan", "goal", "input")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    plan: _plan_pb2.Plan
    goal: str
    input: _struct_pb2.Struct
    def __init__(self, workflow: _Optional[str] = ..., plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ..., goal: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DecomposeResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _plan_pb2.Plan
    def __init__(self, plan: _Optional[_Union[_plan_pb2.Plan, _Mapping]] = ...) -> None: ...

class DispatchRequest(_message.Message):
    __slots__ = ("request_id", "capability", "input", "priority", "difficulty")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    capability: str
    input: _struct_pb2.Struct
    priority: _plan_pb2.Priority
    difficulty: _plan_pb2.Difficulty
    def __init__(self, request_id: _Optional[str] = ..., capability: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[_Union[_plan_pb2.Priority, str]] = ..., difficulty: _Optional[_Union[_plan_pb2.Difficulty, str]] = ...) -> None: ...

class DispatchResponse(_message.Message):
    __slots__ = ("request_id", "output", "worker_id", "model", "attempts", "usage", "duration")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    output: _struct_pb2.Struct
    worker_id: str
    model: str
    attempts: int
    usage: _worker_pb2.Usage
    duration: _duration_pb2.Duration
    def __init__(self, request_id: _Optional[str] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., worker_id: _Optional[str] = ..., model: _Optional[str] = ..., attempts: _Optional[int] = ..., usage: _Optional[_Union[_worker_pb2.Usage, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: _worker_pb2.WorkerInfo
    def __init__(self, worker: _Optional[_Union[_worker_pb2.WorkerInfo, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "health")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    health: _worker_pb2.WorkerHealth
    def __init__(self, worker_id: _Optional[str] = ..., health: _Optional[_Union[_worker_pb2.WorkerHealth, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("directive", "heartbeat_interval")
    DIRECTIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    directive: HeartbeatDirective
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, directive: _Optional[_Union[HeartbeatDirective, str]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("info", "state", "health", "in_flight", "latency_estimate", "error_rate", "last_heartbeat")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    info: _worker_pb2.WorkerInfo
    state: WorkerState
    health: _worker_pb2.WorkerHealth
    in_flight: int
    latency_estimate: _duration_pb2.Duration
    error_rate: float
    last_heartbeat: _timestamp_pb2.Timestamp
    def __init__(self, info: _Optional[_Union[_worker_pb2.WorkerInfo, _Mapping]] = ..., state: _Optional[_Union[WorkerState, str]] = ..., health: _Optional[_Union[_worker_pb2.WorkerHealth, _Mapping]] = ..., in_flight: _Optional[int] = ..., latency_estimate: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_rate: _Optional[float] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("capability",)
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    capability: str
    def __init__(self, capability: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("recent_requests",)
    RECENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    recent_requests: int
    def __init__(self, recent_requests: _Optional[int] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("capability", "depth", "oldest_age")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_FIELD_NUMBER: _ClassVar[int]
    capability: str
    depth: int
    oldest_age: _duration_pb2.Duration
    def __init__(self, capability: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RequestSummary(_message.Message):
    __slots__ = ("request_id", "workflow", "state", "duration", "finished_at", "error_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow: str
    state: RequestState
    duration: _duration_pb2.Duration
    finished_at: _timestamp_pb2.Timestamp
    error_code: str
    def __init__(self, request_id: _Optional[str] = ..., workflow: _Optional[str] = ..., state: _Optional[_Union[RequestState, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_code: _Optional[str] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("queues", "active_requests", "window", "succeeded", "failed", "cancelled", "requests_per_second", "latency_p50", "latency_p95", "latency_p99", "recent")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStats]
    active_requests: int
    window: _duration_pb2.Duration
    succeeded: int
    failed: int
    cancelled: int
    requests_per_second: float
    latency_p50: _duration_pb2.Duration
    latency_p95: _duration_pb2.Duration
    latency_p99: _duration_pb2.Duration
    recent: _containers.RepeatedCompositeFieldContainer[RequestSummary]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStats, _Mapping]]] = ..., active_requests: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., requests_per_second: _Optional[float] = ..., latency_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., latency_p95: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., latency_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., recent: _Optional[_Iterable[_Union[RequestSummary, _Mapping]]] = ...) -> None: ...
