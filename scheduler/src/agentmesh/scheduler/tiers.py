"""Cost-aware routing: which model tier a subtask goes to, and what it may spend.

A subtask goes to the cheapest tier that serves its difficulty: simple work
to the cheapest tier in the mesh, nuanced work to the large tier. When no
live worker offers a tier that high, the highest tier there is serves it
rather than nobody. An output that fails validation escalates the subtask
to the next tier up. A request's cost budget is reserved before each
attempt from an estimate and settled with the real cost after it; an
attempt whose estimate does not fit goes to a cheaper tier, or fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentmesh.errors import FailedPrecondition
from agentmesh.scheduler.registry import WorkerRecord
from agentmesh.tiers import Difficulty, Tier

# Cheapest first; Tier.UNSPECIFIED counts as small.
BUILTIN, SMALL, LARGE = Tier.BUILTIN, Tier.SMALL, Tier.LARGE
SIMPLE, NUANCED = Difficulty.SIMPLE, Difficulty.NUANCED


#: Every tier's rank, looked up rather than made: `rank` runs several times per subtask.
_RANKS = {int(tier): tier or SMALL for tier in Tier}


def rank(tier: int) -> Tier:
    """A tier's place in the order, TIER_UNSPECIFIED taken as small."""
    ranked = _RANKS.get(tier)
    return Tier(tier) if ranked is None else ranked  # Tier() refuses what is no tier


def min_tier(difficulty: Difficulty) -> Tier:
    """The lowest tier that serves a difficulty."""
    return LARGE if difficulty == NUANCED else BUILTIN


def target_tier(live_tiers: Iterable[int], minimum: int) -> int | None:
    """The cheapest live tier at or above minimum, else the highest live one; None if none."""
    tiers = sorted({rank(t) for t in live_tiers})
    if not tiers:
        return None
    return next((t for t in tiers if t >= minimum), tiers[-1])


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


def estimate_cost(data: Mapping[str, Any], price: Price) -> float:
    """A deliberately high estimate of one attempt's cost.

    About four characters per token in; out, half as many tokens as in,
    between 64 and 1024. Only used to decide whether an attempt fits a
    budget: the real cost is settled from the worker's usage.
    """
    tokens_in = len(json.dumps(data, ensure_ascii=False)) / 4 + 50
    tokens_out = min(max(tokens_in / 2, 64), 1024)
    return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1e6


class Budget:
    """A request's cost budget: reserved before attempts, settled after them."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0

    @property
    def remaining(self) -> float:
        return self.limit - self.spent - self.reserved

    def reserve(self, amount: float) -> bool:
        """Hold amount for an attempt; False when it does not fit."""
        if amount > self.remaining + 1e-12:
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        """Release a reservation and charge what the attempt really cost."""
        self.reserved = max(self.reserved - reserved, 0.0)
        self.spent += actual


def prices_by_tier(workers: Iterable[WorkerRecord]) -> dict[int, Price]:
    """Each tier's highest declared prices: what an attempt there may cost at most."""
    prices: dict[int, Price] = {}
    for w in workers:
        tier = rank(w.spec.tier)
        price = prices.get(tier, Price())
        prices[tier] = Price(
            max(price.input_per_mtok, w.spec.input_price_per_mtok),
            max(price.output_per_mtok, w.spec.output_price_per_mtok),
        )
    return prices


def choose_within_budget(
    candidates: Mapping[int, Price], preferred: int, data: Mapping[str, Any], budget: Budget | None
) -> tuple[int, float]:
    """The tier to try and the amount reserved for it.

    The preferred tier when its estimate fits the budget, else the most
    capable cheaper tier that fits; FailedPrecondition when none does.
    """
    if budget is None:
        return preferred, 0.0
    for tier in sorted((t for t in candidates if t <= preferred), reverse=True):
        estimate = estimate_cost(data, candidates[tier])
        if budget.reserve(estimate):
            return tier, estimate
    raise FailedPrecondition(
        f"the request's cost budget of ${budget.limit:.6f} cannot cover this subtask "
        f"(${budget.spent:.6f} spent, ${budget.reserved:.6f} reserved)",
        reason="BUDGET_EXCEEDED",
        metadata={"budget_usd": f"{budget.limit:.6f}"},
    )
