"""1,000× the reference load: where the scheduler replicas, the database and the workers
saturate, in a fluid simulation of a day (`python -m bench.scaling_sim`; docs/scaling.md).

The reference load is S10's: 10,000 support requests a day of seven subtasks,
arriving over a working day (S10's hourly weights). At 1,000× that is 10
million requests and 70 million subtasks a day, with bursts: `bursts` times a
day, for `burst_minutes`, the arrival rate is 10× the day's mean on top of the
hour's. Each component is a server of a capacity (subtasks per second) fed by
the arrivals minute by minute; what it cannot serve waits (a fluid queue), and
its wait is the queue over its capacity. The capacities come from this
machine's measurements, per core:

- a scheduler replica: 292 µs of CPU per subtask with the PostgreSQL store
  (S2's variant), so one core serves about 3,400 subtasks/s; planned at 70%;
- the database: 29 µs of its CPU per subtask (S2), 4 KiB of WAL per subtask
  (two upserts of a ~1.5 KiB record with their index entries) and 12.5 KiB
  kept per request;
- the workers: S10's self-hosted pods of one slot, 4 s a subtask (median).

No part of it runs the mesh: it is arithmetic on measured unit costs, to say
which part runs out first and what the fleet costs; each figure scales with
its parameter.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass

HOURLY = (1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 13, 10, 8, 8, 8, 7, 6, 5, 4, 3, 3, 2, 2, 1)


@dataclass(frozen=True)
class Load:
    requests_per_day: float = 10_000 * 1_000
    subtasks: int = 7
    bursts: int = 6
    """Bursts a day, at seeded random minutes."""
    burst_minutes: int = 5
    burst_factor: float = 10.0
    """A burst adds this many times the day's mean rate."""


@dataclass(frozen=True)
class Costs:
    scheduler_cpu_us: float = 292.0
    database_cpu_us: float = 29.0
    wal_kib_per_subtask: float = 4.0
    kept_kib_per_request: float = 12.5
    subtask_seconds: float = 4.0
    """A subtask's time on a worker's slot (self-hosted small model, S10)."""
    utilisation: float = 0.7
    """The share of a component's capacity a plan may use."""


@dataclass(frozen=True)
class Fleet:
    replicas: int
    replica_cores: int
    database_cores: int
    worker_slots: int


def arrivals(load: Load, seed: int) -> list[float]:
    """Subtasks per second, minute by minute, over the day."""
    mean = load.requests_per_day * load.subtasks / 86_400
    total = sum(HOURLY)
    rates = [load.requests_per_day * load.subtasks * HOURLY[m // 60] / total / 3_600
             for m in range(1_440)]  # fmt: skip
    rng = random.Random(seed)
    for start in rng.sample(range(1_440 - load.burst_minutes), load.bursts):
        for m in range(start, start + load.burst_minutes):
            rates[m] += load.burst_factor * mean
    return rates


def capacities(fleet: Fleet, costs: Costs) -> dict[str, float]:
    """Subtasks per second each component serves at full use."""
    return {
        "replicas": fleet.replicas * fleet.replica_cores * 1e6 / costs.scheduler_cpu_us,
        "database": fleet.database_cores * 1e6 / costs.database_cpu_us,
        "workers": fleet.worker_slots / costs.subtask_seconds,
    }


def simulate(rates: list[float], capacity: float) -> dict[str, float]:
    """A fluid queue fed minute by minute: peak use, the most waiting, the longest wait."""
    queue = most = longest = 0.0
    for rate in rates:
        queue = max(0.0, queue + (rate - capacity) * 60)
        most = max(most, queue)
        longest = max(longest, queue / capacity)
    return {"peak_use": max(rates) / capacity, "most_waiting": most, "longest_wait_s": longest}


def plan(rates: list[float], costs: Costs, sized_for: float) -> Fleet:
    """The smallest fleet whose every component runs within `costs.utilisation` at
    `sized_for` subtasks per second."""
    need = sized_for / costs.utilisation
    cores = math.ceil(need * costs.scheduler_cpu_us / 1e6)
    return Fleet(
        replicas=cores,
        replica_cores=1,
        database_cores=max(2, math.ceil(need * costs.database_cpu_us / 1e6)),
        worker_slots=math.ceil(need * costs.subtask_seconds),
    )


def saturation(fleet: Fleet, costs: Costs, load: Load, seed: int) -> dict[str, float]:
    """The multiple of the reference load (10,000 a day) at which each component of
    `fleet` passes full use at its busiest minute."""
    reference = max(arrivals(Load(**{**asdict(load), "requests_per_day": 10_000}), seed))
    return {name: cap / reference for name, cap in capacities(fleet, costs).items()}


def run(seed: int = 20_250_601) -> dict[str, object]:
    load, costs = Load(), Costs()
    rates = arrivals(load, seed)
    peak_hour = max(sum(rates[h * 60 : h * 60 + 60]) / 60 for h in range(24))
    report: dict[str, object] = {
        "subtasks_per_day": load.requests_per_day * load.subtasks,
        "mean_subtasks_per_s": sum(rates) / len(rates),
        "peak_hour_subtasks_per_s": peak_hour,
        "burst_subtasks_per_s": max(rates),
        "wal_mib_per_s_in_a_burst": max(rates) * costs.wal_kib_per_subtask / 1024,
        "stored_gib_per_day": load.requests_per_day * costs.kept_kib_per_request / 2**20,
    }
    for name, sized_for in (("sized_for_peak_hour", peak_hour), ("sized_for_bursts", max(rates))):
        fleet = plan(rates, costs, sized_for)
        report[name] = {
            "fleet": asdict(fleet),
            **{part: simulate(rates, cap) for part, cap in capacities(fleet, costs).items()},
        }
    # Today's fleet of this machine's S11: 3 replicas of 1 core, a 2-core database,
    # 64 worker slots: the load multiple at which each part runs out.
    report["today_saturates_at_x_reference"] = saturation(Fleet(3, 1, 2, 64), costs, load, seed)
    return report


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 3 if abs(value) < 10 else 1)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    print(json.dumps(_rounded(run()), indent=2))
