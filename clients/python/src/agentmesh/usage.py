"""What one subtask cost: tokens and money, as the worker reports and the scheduler sums."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Tokens and money one subtask cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
