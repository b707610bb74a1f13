"""Skills on the wire: `Skill` to and from agentmesh.v1.SkillSpec.

A worker sends its skills' contracts when it registers and the scheduler
lists them in ListWorkers; both convert here, the same way. The model
instructions stay with the worker: they are how it does the work, not what
the work is.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from agentmesh.server.skills import ANY_OBJECT, Skill
from agentmesh.v1 import worker_pb2
from agentmesh.wire import (
    dict_to_struct,
    difficulty_from_proto,
    difficulty_to_proto,
    struct_to_dict,
)


def skill_to_proto(skill: Skill) -> worker_pb2.SkillSpec:
    """A skill's contract as sent in RegisterRequest.skills and WorkerStatus.skills."""
    return worker_pb2.SkillSpec(
        name=skill.name,
        description=skill.description,
        input_schema=dict_to_struct(dict(skill.input_schema)),
        output_schema=dict_to_struct(dict(skill.output_schema)),
        max_input_bytes=max(skill.max_input_bytes, 0),
        difficulty=difficulty_to_proto(skill.difficulty),
    )


def skill_from_proto(spec: worker_pb2.SkillSpec, field: str = "skills") -> Skill:
    """The contract a SkillSpec declares; an unset or empty schema is any object.

    Whole numbers in the schemas come back as int (a Struct holds doubles), so
    a spec sent over the wire compares equal to the one it was made from.
    InvalidArgument naming `field` for a number JSON cannot hold.
    """
    return Skill(
        name=spec.name,
        description=spec.description,
        input_schema=_schema(spec.input_schema, f"{field}.input_schema"),
        output_schema=_schema(spec.output_schema, f"{field}.output_schema"),
        instructions="",
        max_input_bytes=spec.max_input_bytes,
        difficulty=difficulty_from_proto(spec.difficulty),
    )


def _schema(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    return struct_to_dict(message, field) or dict(ANY_OBJECT)
