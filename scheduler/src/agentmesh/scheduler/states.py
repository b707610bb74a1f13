"""The states of a request and of its subtasks, as the core and the store name them.

Their values are the names of agentmesh.v1's `RequestState` and
`SubtaskState` without the prefix, and the store keeps them as those
strings, so rows written by any version read back as the same states. The
protobuf conversion is `convert.py`'s.
"""

from __future__ import annotations

from enum import StrEnum


class SubtaskState(StrEnum):
    """Where a subtask of a request stands."""

    PENDING = "PENDING"
    """Waiting for its dependencies."""
    QUEUED = "QUEUED"
    """Waiting for a worker."""
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    """Its condition did not hold, or an optional step could not run."""
    CANCELLED = "CANCELLED"
    """Stopped because its request ended first."""


FINISHED = frozenset({SubtaskState.SUCCEEDED, SubtaskState.FAILED, SubtaskState.SKIPPED})
"""States a subtask does not leave (a cancelled one runs again if its request does)."""


class RequestState(StrEnum):
    """Where a request stands: running until its outcome is set, once."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
