"""`python -m bench [--smoke] [--only S1,S3] [--out DIR] [--seed N]`: run the benchmarks.

Writes DIR/latest.json, DIR/latest.md and DIR/latency.png (DIR defaults
to bench/results, or bench/results/smoke with --smoke). Process logs go to
a temporary directory named at the end. The exit status is 1 when a
scenario could not run at all; missed targets are results, not errors.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    lm_local_model,
    report,
    s1_overhead,
    s2_throughput,
    s3_tail,
    s5_retry_storm,
    s6_reference,
    s7_fanout,
    s8_overload,
    s9_critical_path,
    s10_autoscaling,
    s11_replicas,
    tls_cost,
)
from bench.harness import ROOT
from bench.stats import ScenarioResult, Target

Runner = Callable[[Path, int, bool], ScenarioResult | list[ScenarioResult]]

#: Scenario keys and what runs them; s3_tail measures S3 and S4 in the same rounds. S1-S9
#: measure the mesh on simulated models, S10 simulates a day of autoscaling (no processes),
#: S11 runs scheduler replicas on one PostgreSQL database; LM runs the local model. The
#: order is the run order, and each one's seed comes from its place.
SCENARIOS: dict[str, Runner] = {
    "S1": s1_overhead.run,
    "S2": s2_throughput.run,
    "S3": s3_tail.run,
    "S5": s5_retry_storm.run,
    "S6": s6_reference.run,
    "S7": s7_fanout.run,
    "S8": s8_overload.run,
    "S9": s9_critical_path.run,
    "LM": lm_local_model.run,
    "S10": s10_autoscaling.run,
    # Last, so that the others keep the seeds their places give them.
    "TLS": tls_cost.run,
    "S11": s11_replicas.run,
}
ALL_KEYS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "TLS", "LM")
DEFAULT_SEED = 20_250_601


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: seconds, not minutes")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. S1,S3")
    parser.add_argument("--out", type=Path, default=None, help="directory for the results")
    parser.add_argument("--logs", type=Path, default=None, help="directory for process logs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base random seed")
    args = parser.parse_args(argv)

    wanted = {k.strip().upper() for k in args.only.split(",") if k.strip()} or set(ALL_KEYS)
    unknown = wanted - set(ALL_KEYS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(ALL_KEYS)}")
    if "S4" in wanted:
        wanted.add("S3")  # measured in the same rounds
    out = args.out or (ROOT / "bench" / "results" / ("smoke" if args.smoke else ""))
    out.mkdir(parents=True, exist_ok=True)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="agentmesh-bench-"))

    started = time.monotonic()
    load_before = os.getloadavg()
    results: list[ScenarioResult] = []
    failed = False
    for index, (key, runner) in enumerate(SCENARIOS.items()):
        if key not in wanted:
            continue
        print(f"bench: {key} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            produced = runner(logs, args.seed + 1000 * index, args.smoke)
        except Exception as error:  # one broken scenario must not lose the others' results
            traceback.print_exc()
            failed = True
            produced = [_crashed(k, error) for k in ((key, "S4") if key == "S3" else (key,))]
        batch = produced if isinstance(produced, list) else [produced]
        for result in batch:
            result.seconds = time.monotonic() - t0
            results.append(result)
            summary = ", ".join(
                f"{n} {'met' if t.met else 'MISSED'}" for n, t in result.targets.items()
            )
            print(f"bench: {result.key} done in {result.seconds:.0f} s: {summary}", file=sys.stderr)

    results.sort(key=lambda r: ALL_KEYS.index(r.key))
    meta = {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.monotonic() - started, 1),
        "smoke": args.smoke,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "logs": str(logs),
        # Other work on the machine skews absolute numbers (ratios suffer less): say how much.
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    report.write_json(out / "latest.json", results, meta)
    (out / "latest.md").write_text(report.markdown(results, meta), encoding="utf-8")
    report.chart(out / "latency.png", results)
    print(f"bench: wrote {out / 'latest.json'}, latest.md, latency.png; logs in {logs}")
    return 1 if failed else 0


def _crashed(key: str, error: Exception) -> ScenarioResult:
    return ScenarioResult(
        key=key,
        title="did not run",
        metrics={"error": f"{type(error).__name__}: {error}"},
        targets={"ran": Target(None, 1.0, ">=", note=f"the scenario crashed: {error}")},
    )


if __name__ == "__main__":
    sys.exit(main())
