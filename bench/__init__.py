"""agentmesh's benchmark suite: `python -m bench` (or `make bench`).

Six scenarios (S1 to S6, see docs/benchmarks.md) run real scheduler and
worker processes on 127.0.0.1, with simulated models behind the real gRPC
stack, and write `bench/results/latest.json`, `latest.md` and
`latency.png`. Comparisons run side by side in interleaved rounds and are
reported as ratios of medians. `python -m bench --smoke` runs the same code
with tiny counts, for the test suite.
"""
