from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_LOW: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_HIGH: _ClassVar[Priority]
    PRIORITY_CRITICAL: _ClassVar[Priority]

class Difficulty(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIFFICULTY_UNSPECIFIED: _ClassVar[Difficulty]
    DIFFICULTY_SIMPLE: _ClassVar[Difficulty]
    DIFFICULTY_NUANCED: _ClassVar[Difficulty]

class ConditionOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONDITION_OPERATOR_UNSPECIFIED: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_EQUALS: _ClassVar[ConditionOperator]
    CONDITION_OPERATOR_NOT_EQUALS: _ClassVar[ConditionOperator]
PRIORITY_UNSPECIFIED: Priority
PRIORITY_LOW: Priority
PRIORITY_NORMAL: Priority
PRIORITY_HIGH: Priority
PRIORITY_CRITICAL: Priority
DIFFICULTY_UNSPECIFIED: Difficulty
DIFFICULTY_SIMPLE: Difficulty
DIFFICULTY_NUANCED: Difficulty
CONDITION_OPERATOR_UNSPECIFIED: ConditionOperator
CONDITION_OPERATOR_EQUALS: ConditionOperator
CONDITION_OPERATOR_NOT_EQUALS: ConditionOperator

class Binding(_message.Message):
    __slots__ = ("refs", "collect", "value")
    REFS_FIELD_NUMBER: _ClassVar[int]
    COLLECT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    collect: bool
    value: _struct_pb2.Value
    def __init__(self, refs: _Optional[_Iterable[str]] = ..., collect: _Optional[bool] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("ref", "operator", "value")
    REF_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    operator: ConditionOperator
    value: _struct_pb2.Value
    def __init__(self, ref: _Optional[str] = ..., operator: _Optional[_Union[ConditionOperator, str]] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class PlanStep(_message.Message):
    __slots__ = ("id", "capability", "inputs", "depends_on", "priority", "difficulty", "optional", "when")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Binding
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Binding, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    capability: str
    inputs: _containers.MessageMap[str, Binding]
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    priority: Priority
    difficulty: Difficulty
    optional: bool
    when: Condition
    def __init__(self, id: _Optional[str] = ..., capability: _Optional[str] = ..., inputs: _Optional[_Mapping[str, Binding]] = ..., depends_on: _Optional[_Iterable[str]] = ..., priority: _Optional[_Union[Priority, str]] = ..., difficulty: _Optional[_Union[Difficulty, str]] = ..., optional: _Optional[bool] = ..., when: _Optional[_Union[Condition, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("workflow", "steps", "answer")
    class AnswerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Binding
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Binding, _Mapping]] = ...) -> None: ...
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    steps: _containers.RepeatedCompositeFieldContainer[PlanStep]
    answer: _containers.MessageMap[str, Binding]
    def __init__(self, workflow: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PlanStep, _Mapping]]] = ..., answer: _Optional[_Mapping[str, Binding]] = ...) -> None: ...
