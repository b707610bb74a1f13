"""Writing the results: latest.json, a Markdown table, and the latency chart."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stats import ScenarioResult, Target


def write_json(path: Path, results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> None:
    """One top-level key per scenario (metrics, targets, notes), plus `meta`."""
    data: dict[str, Any] = {r.key: r.to_json() for r in results}
    data["meta"] = dict(meta)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _cell(target: Target) -> tuple[str, str]:
    unit = f" {target.unit}" if target.unit and target.unit != "×" else ""
    suffix = "×" if target.unit == "×" else ""
    value = f"{_number(target.value)}{suffix}{unit}"
    goal = f"{'≤' if target.cmp == '<=' else '≥'} {_number(target.goal)}{suffix}{unit}"
    return value, goal


def markdown(results: Sequence[ScenarioResult], meta: Mapping[str, Any]) -> str:
    """A table of every target (scenario, target, value, goal, met), then the notes."""
    smoke = ", SMOKE run (tiny counts: the numbers mean nothing)" if meta.get("smoke") else ""
    lines = [
        "# agentmesh benchmark results",
        "",
        f"Run {meta.get('started', '')} on {meta.get('cpus', '?')} CPUs "
        f"({meta.get('platform', '')}), Python {meta.get('python', '')}, seed "
        f"{meta.get('seed', '')}{smoke}; {meta.get('seconds', 0):.0f} s in all; 1-minute load "
        f"average {meta.get('loadavg_1m_before', '?')} before, {meta.get('loadavg_1m_after', '?')} "
        "after.",
        "",
        "| scenario | target | value | goal | met |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for name, target in result.targets.items():
            value, goal = _cell(target)
            mark = "yes" if target.met else "**no**"
            scenario = f"{result.key} {result.title.split(':')[0]}"
            lines.append(f"| {scenario} | {name} | {value} | {goal} | {mark} |")
    lines.append("")
    for result in results:
        lines.append(f"## {result.key} {result.title}")
        lines.append("")
        for key, value in result.metrics.items():
            lines.append(f"- `{key}`: {_format(value)}")
        for name, target in result.targets.items():
            if target.note:
                lines.append(f"- target `{name}`: {target.note}")
        for note in result.notes:
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        if not value:
            return "none"
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return "n/a" if value is None else str(value)


def chart(path: Path, results: Sequence[ScenarioResult]) -> None:
    """Latency distributions per policy: one panel per load, a CCDF curve per series.

    A complementary CDF on a log scale shows the tail (p95, p99) that the
    scenarios are about, where a histogram would hide it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (title, series)
        for result in results
        for title, series in result.latencies.items()
        if any(series.values())
    ]
    if not panels:
        panels = [("no latencies measured", {})]
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels, strict=False):
        for label, samples in series.items():
            ordered = sorted(s * 1000.0 for s in samples)
            if not ordered:
                continue
            n = len(ordered)
            ccdf = [1.0 - i / n for i in range(n)]
            ax.step(ordered, ccdf, where="post", label=f"{label} (n={n})")
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-3, top=1.05)
        ax.axhline(0.05, color="grey", linewidth=0.6, linestyle=":")
        ax.axhline(0.01, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("share of requests slower (p95, p99 dotted)")
        ax.set_title(title)
        ax.grid(True, which="both", linewidth=0.3)
        if series:
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
