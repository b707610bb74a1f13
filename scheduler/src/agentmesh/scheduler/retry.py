"""When and how long to wait before another attempt at a subtask."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, inside the request's deadline."""

    max_attempts: int = 3
    """Attempts in all, the first included. Default 3."""
    initial_backoff: float = 0.5
    """Upper bound of the wait before the first retry, in seconds. Default 0.5 s."""
    multiplier: float = 4.0
    """Growth of the bound per retry: 0.5 s, then 2 s. Default 4."""
    max_backoff: float = 5.0
    """Cap on the bound, in seconds. Default 5 s."""
    budget: float = 0.1
    """Retries allowed per first attempt, over time: about 10% extra load at most.
    Env AGENTMESH_RETRY_BUDGET. Default 0.1."""
    budget_reserve: float = 10.0
    """Retries a quiet mesh may still make in a burst. Env AGENTMESH_RETRY_BUDGET_RESERVE.
    Default 10."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry).

        Full jitter (uniform between zero and the bound) spreads the retries
        of many subtasks that failed together, so they do not come back as
        one wave.
        """
        bound = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return rng.uniform(0.0, bound)
