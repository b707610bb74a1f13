"""S6 the reference case: the support workflow, a monolith against the mesh.

The source system reports, for its support workflow, p95 latency 5 s → 1.2 s
and cost −65% when one large model doing everything in sequence was replaced
by a decomposed, parallel mesh that runs most subtasks on a cheap tier. This
scenario rebuilds both sides from a documented, seeded model (`Model`; the
numbers are in docs/benchmarks.md) with `sim` workers:

- monolith: one large-tier worker runs the seven steps of a non-English
  ticket one after the other (a plan whose steps form a chain);
- mesh: the support workflow's DAG (four independent first steps, then
  triage, the nuanced reply, the translation) over two small-tier workers
  and one large-tier worker; the scheduler's cost routing sends the simple
  steps to the small tier and the nuanced reply to the large one.

Latencies are the model's divided by `Model.scale` to keep the run short;
the scheduler's own overhead is not scaled, which slightly favours the
monolith (one hop per step either way, but the mesh's critical path is
shorter, so its fixed overhead weighs more). Token counts come from the sim
backend (about four characters a token, of each step's input and output),
identical on both sides; prices are list prices per million tokens.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from agentmesh.v1 import plan_pb2, scheduler_pb2, worker_pb2
from bench.harness import Cluster, Mesh, SchedulerCaller, WorkerSpec, sim_worker
from bench.load import Call, closed_loop, rounds
from bench.stats import ScenarioResult, Target, median, percentile, ratio

TICKET = {
    "text": (
        "Guten Tag, mein Laptop (Bestellnummer ORD-884213) kam am 3. März mit einem "
        "gesprungenen Bildschirm an. Ich habe 1.299,00 EUR bezahlt und möchte mein Geld "
        "zurück, nicht einen Ersatz. Bitte melden Sie sich unter anna.schmidt@example.de "
        "oder +49 30 1234567. Ich bin wirklich enttäuscht vom Service."
    )
}

#: (id, capability, inputs as field → references, data dependencies, nuanced?)
STEPS: tuple[tuple[str, str, dict[str, str], tuple[str, ...], bool], ...] = (
    ("entities", "extract_entities", {"text": "request.text"}, (), False),
    ("language", "detect_language", {"text": "request.text"}, (), False),
    ("sentiment", "sentiment", {"text": "request.text"}, (), False),
    ("summary", "summarize", {"text": "request.text"}, (), False),
    (
        "triage",
        "classify",
        {"text": "request.text", "entities": "steps.entities", "sentiment": "steps.sentiment"},
        ("entities", "sentiment"),
        False,
    ),
    (
        "reply",
        "draft_reply",
        {
            "text": "request.text",
            "entities": "steps.entities",
            "sentiment": "steps.sentiment",
            "summary": "steps.summary",
            "intent": "steps.triage",
        },
        ("entities", "sentiment", "summary", "triage"),
        True,
    ),
    ("translate", "translate", {"text": "steps.reply.reply"}, ("reply", "language"), False),
)


@dataclass(frozen=True)
class Model:
    """The seeded model of the source system, in real (unscaled) seconds and US dollars."""

    monolith_p95: float = 5.0
    """p95 of one request on the monolith: seven large-model steps in sequence, seconds."""
    step_sigma: float = 0.35
    """Log-normal shape of one step's latency, on either tier."""
    small_speedup: float = 3.0
    """How much faster a small-tier step is than a large-tier one (median)."""
    large_price: tuple[float, float] = (2.50, 10.00)
    """Large tier, per million input and output tokens (a GPT-4o-class list price)."""
    small_price: tuple[float, float] = (0.15, 0.60)
    """Small tier, per million input and output tokens (a GPT-4o-mini-class list price)."""
    scale: float = 5.0
    """Every latency is divided by this in the run. Not more: the scheduler's own
    overhead is not scaled, and ×5 when read back in model seconds."""

    @property
    def large_step_median(self) -> float:
        """The step median that puts the monolith's p95 at `monolith_p95` (seconds)."""
        return self.monolith_p95 / _p95_of_sum(len(STEPS), self.step_sigma)

    @property
    def small_step_median(self) -> float:
        return self.large_step_median / self.small_speedup

    def predicted_p95(self, draws: int = 20_000) -> tuple[float, float]:
        """p95 of the monolith and of the mesh's critical path from the model alone.

        No scheduler, no network: what the run would show with zero overhead,
        to tell the model's share of the result from the mesh's.
        """
        rng = random.Random("s6-model-predict")

        def step(median: float) -> float:
            return median * math.exp(rng.gauss(0.0, self.step_sigma))

        large, small = self.large_step_median, self.small_step_median
        monolith, mesh = [], []
        for _ in range(draws):
            monolith.append(sum(step(large) for _ in STEPS))
            entities, language, sentiment, summary = (step(small) for _ in range(4))
            triage = max(entities, sentiment) + step(small)
            reply = max(summary, triage) + step(large)
            mesh.append(max(reply, language) + step(small))
        return (
            statistics.quantiles(monolith, n=100)[94],
            statistics.quantiles(mesh, n=100)[94],
        )


@cache
def _p95_of_sum(steps: int, sigma: float, draws: int = 100_000) -> float:
    """p95 of a sum of `steps` log-normal latencies of median 1 (seeded Monte Carlo)."""
    rng = random.Random("s6-model-fit")
    sums = [sum(math.exp(rng.gauss(0.0, sigma)) for _ in range(steps)) for _ in range(draws)]
    return statistics.quantiles(sums, n=100)[94]


def _binding(refs: Sequence[str] = (), literal: str | None = None) -> plan_pb2.Binding:
    binding = plan_pb2.Binding(refs=list(refs))
    if literal is not None:
        binding.value.string_value = literal
    return binding


def plan(chain: bool) -> plan_pb2.Plan:
    """The support workflow's steps; with chain, each also waits for the one before."""
    steps = []
    previous: str | None = None
    for step_id, capability, inputs, deps, nuanced in STEPS:
        bound = {field: _binding([ref]) for field, ref in inputs.items()}
        if capability == "translate":
            # The ticket is German: the reply is translated back (the step always runs).
            bound["target_language"] = _binding(literal="de")
        depends = list(deps)
        if chain and previous is not None and previous not in depends:
            depends.append(previous)
        steps.append(
            plan_pb2.PlanStep(
                id=step_id,
                capability=capability,
                inputs=bound,
                depends_on=depends,
                difficulty=(plan_pb2.DIFFICULTY_NUANCED if nuanced else plan_pb2.DIFFICULTY_SIMPLE),
            )
        )
        previous = step_id
    return plan_pb2.Plan(
        steps=steps,
        answer={"reply": _binding(["steps.translate.text", "steps.reply.reply"])},
    )


@dataclass(frozen=True)
class Params:
    concurrency: int = 8
    """Requests in flight per variant: light load, so that latency is the model's."""
    seconds: float = 6.0
    """Length of one variant's turn in a round."""
    rounds: int = 3
    warmup: float = 1.0
    deadline: float = 30.0


FULL = Params()
SMOKE = Params(seconds=0.8, rounds=1, warmup=0.2)
MODEL = Model()


def run(log_dir: Path, seed: int, smoke: bool) -> ScenarioResult:
    params = SMOKE if smoke else FULL
    model = MODEL
    large = model.large_step_median / model.scale
    small = model.small_step_median / model.scale

    def priced(
        name: str, tier: str, latency: float, price: tuple[float, float], s: int
    ) -> WorkerSpec:
        return sim_worker(
            name,
            latency=latency,
            sigma=model.step_sigma,
            seed=s,
            capacity=16,
            AGENTMESH_TIER=tier,
            AGENTMESH_SIM_INPUT_PRICE=repr(price[0]),
            AGENTMESH_SIM_OUTPUT_PRICE=repr(price[1]),
        )

    meshes = {
        "monolith": Mesh(
            "s6-monolith", log_dir, [priced("large-1", "large", large, model.large_price, seed)]
        ),
        "mesh": Mesh(
            "s6-mesh",
            log_dir,
            [
                priced("small-1", "small", small, model.small_price, seed + 1),
                priced("small-2", "small", small, model.small_price, seed + 2),
                priced("large-1", "large", large, model.large_price, seed + 3),
            ],
        ),
    }
    plans = {"monolith": plan(chain=True), "mesh": plan(chain=False)}
    with Cluster(list(meshes.values())):
        outcome = asyncio.run(_measure(meshes, plans, params))

    p95 = {v: median(percentile(r, 0.95) for r in outcome.latencies[v]) for v in meshes}
    cost = {v: median(outcome.costs[v]) for v in meshes}
    p95_ratio = ratio(p95["mesh"], p95["monolith"])
    predicted = model.predicted_p95()
    cost_ratio = ratio(cost["mesh"], cost["monolith"])
    tiers = outcome.tiers["mesh"]
    small_share = ratio(tiers.get("small", 0), sum(tiers.values()))
    return ScenarioResult(
        key="S6",
        title="Reference case: support workflow, monolith vs mesh",
        metrics={
            "latency_scale": f"÷{model.scale:g}",
            "monolith_p95_s_unscaled": _unscaled(p95["monolith"], model),
            "mesh_p95_s_unscaled": _unscaled(p95["mesh"], model),
            "monolith_p50_s_unscaled": _unscaled(
                median(percentile(r, 0.5) for r in outcome.latencies["monolith"]), model
            ),
            "mesh_p50_s_unscaled": _unscaled(
                median(percentile(r, 0.5) for r in outcome.latencies["mesh"]), model
            ),
            "monolith_cost_per_request_usd": cost["monolith"],
            "mesh_cost_per_request_usd": cost["mesh"],
            "cost_change": None if cost_ratio is None else cost_ratio - 1.0,
            "mesh_subtasks_on_small_tier": small_share,
            "mesh_subtasks_by_tier": dict(tiers),
            "requests": {v: sum(len(r) for r in outcome.latencies[v]) for v in meshes},
            "failed_requests": outcome.failed,
            "model_large_step_median_s": model.large_step_median,
            "model_small_step_median_s": model.small_step_median,
            "model_only_monolith_p95_s": predicted[0],
            "model_only_mesh_p95_s": predicted[1],
            "model_only_p95_ratio": predicted[1] / predicted[0],
        },
        targets={
            "p95_latency_ratio": Target(
                p95_ratio, round(1.2 / 5.0, 3), "<=", "×", note="source: p95 5 s → 1.2 s"
            ),
            "cost_ratio": Target(cost_ratio, 0.35, "<=", "×", note="source: cost −65%"),
        },
        notes=[
            f"Model: monolith p95 {model.monolith_p95:g} s (7 sequential large-tier steps, "
            f"step median {model.large_step_median:.3f} s, σ {model.step_sigma}); small tier "
            f"{model.small_speedup:g}× faster; prices per Mtok large {model.large_price}, small "
            f"{model.small_price}. Latencies run ÷{model.scale:g}; p95s are shown ×"
            f"{model.scale:g} again.",
            f"{params.concurrency} closed-loop clients per variant, {params.rounds} interleaved "
            f"rounds of {params.seconds:g} s; p95 is the median over rounds of each round's p95.",
        ],
        latencies={
            f"S6 support workflow (latencies ÷{model.scale:g})": {
                v: [x for r in outcome.latencies[v] for x in r] for v in meshes
            }
        },
    )


def _unscaled(seconds: float | None, model: Model) -> float | None:
    return None if seconds is None else seconds * model.scale


@dataclass
class _Outcome:
    latencies: dict[str, list[list[float]]]
    """OK request latencies per round, by variant."""
    costs: dict[str, list[float]]
    tiers: dict[str, Counter[str]]
    failed: int = 0


_TIER_NAMES = {
    worker_pb2.TIER_SMALL: "small",
    worker_pb2.TIER_LARGE: "large",
    worker_pb2.TIER_BUILTIN: "builtin",
}


async def _measure(
    meshes: dict[str, Mesh], plans: dict[str, plan_pb2.Plan], params: Params
) -> _Outcome:
    callers = {v: SchedulerCaller(m.target) for v, m in meshes.items()}
    outcome = _Outcome(
        {v: [] for v in meshes}, {v: [] for v in meshes}, {v: Counter() for v in meshes}
    )
    recording = False

    def call_for(variant: str) -> Call:
        async def call() -> int:
            # FULL: the tiers that served the request are its subtasks'.
            request = await callers[variant].submit(
                plans[variant], TICKET, params.deadline, view=scheduler_pb2.REQUEST_VIEW_FULL
            )
            if request.state != scheduler_pb2.REQUEST_STATE_SUCCEEDED:
                outcome.failed += 1
            if recording:
                outcome.costs[variant].append(request.usage.cost_usd)
                outcome.tiers[variant].update(
                    _TIER_NAMES.get(s.tier, "?") for s in request.subtasks
                )
            return 1

        return call

    try:
        for variant in meshes:
            await closed_loop(call_for(variant), params.concurrency, params.warmup)
        recording = True
        for order in rounds(list(meshes), params.rounds):
            for variant in order:
                samples = await closed_loop(call_for(variant), params.concurrency, params.seconds)
                outcome.latencies[variant].append([s.latency for s in samples if s.ok])
                outcome.failed += sum(1 for s in samples if not s.ok)
    finally:
        for caller in callers.values():
            await caller.close()
    return outcome
