"""The numbers a scenario reports: percentiles, targets and the scenario's result."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Comparison = Literal["<=", ">="]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) by linear interpolation between ranks; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds, None kept."""
    return None if seconds is None else seconds * 1000.0


@dataclass(frozen=True)
class Target:
    """A goal from the issue and the value this run measured against it."""

    value: float | None
    """What was measured; None when the scenario could not measure it."""
    goal: float
    """The bound the value must respect."""
    cmp: Comparison = "<="
    """How value and goal compare when the target is met."""
    unit: str = ""
    """Unit of value and goal, for the table ("ms", "×", "/s", ...)."""
    note: str = ""
    """Why the value is missing or what qualifies it."""

    @property
    def met(self) -> bool:
        if self.value is None or math.isnan(self.value):
            return False
        return self.value <= self.goal if self.cmp == "<=" else self.value >= self.goal

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "value": rounded(self.value),
            "goal": self.goal,
            "met": self.met,
            "cmp": self.cmp,
            "unit": self.unit,
        }
        if self.note:
            data["note"] = self.note
        return data


@dataclass
class ScenarioResult:
    """What one scenario measured: its metrics, its targets and notes on the run."""

    key: str
    """S1 … S7, or LM."""
    title: str
    metrics: dict[str, Any]
    targets: dict[str, Target]
    notes: list[str] = field(default_factory=list)
    latencies: dict[str, dict[str, Sequence[float]]] = field(default_factory=dict)
    """Raw latencies in seconds for the chart: panel title → series label → samples."""
    seconds: float = 0.0
    """Wall time the scenario took, startup included."""

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "metrics": {k: rounded(v) for k, v in self.metrics.items()},
            "targets": {name: t.to_json() for name, t in self.targets.items()},
            "notes": list(self.notes),
            "seconds": round(self.seconds, 1),
        }


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits (recursively), for readable JSON."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value
