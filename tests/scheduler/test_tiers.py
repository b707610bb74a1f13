import pytest

from agentmesh.errors import FailedPrecondition
from agentmesh.scheduler.tiers import (
    BUILTIN,
    LARGE,
    NUANCED,
    SIMPLE,
    SMALL,
    Budget,
    Price,
    choose_within_budget,
    estimate_cost,
    min_tier,
    target_tier,
)


def test_simple_goes_to_the_cheapest_tier_and_nuanced_to_large() -> None:
    assert target_tier([LARGE, SMALL, BUILTIN], min_tier(SIMPLE)) == BUILTIN
    assert target_tier([LARGE, SMALL, BUILTIN], min_tier(NUANCED)) == LARGE


def test_without_a_high_enough_tier_the_highest_serves() -> None:
    assert target_tier([BUILTIN, SMALL], min_tier(NUANCED)) == SMALL
    assert target_tier([], BUILTIN) is None
    assert target_tier([0], BUILTIN) == SMALL  # unspecified counts as small


def test_estimate_grows_with_input_and_price() -> None:
    price = Price(1.0, 2.0)
    short, long = estimate_cost({"text": "hi"}, price), estimate_cost({"text": "x" * 4000}, price)
    assert 0 < short < long
    assert estimate_cost({"text": "x" * 4000}, Price()) == 0


def test_budget_reserves_and_settles() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.6)
    assert not budget.reserve(0.6)
    budget.settle(0.6, 0.1)
    assert budget.spent == pytest.approx(0.1) and budget.reserved == 0
    assert budget.remaining == pytest.approx(0.9)


def test_choose_downgrades_to_a_tier_that_fits_or_fails() -> None:
    data = {"text": "x" * 4000}
    prices = {BUILTIN: Price(), LARGE: Price(10.0, 30.0)}
    assert choose_within_budget(prices, LARGE, data, None) == (LARGE, 0.0)
    rich = Budget(1.0)
    tier, reserved = choose_within_budget(prices, LARGE, data, rich)
    assert tier == LARGE and reserved > 0 and rich.reserved == reserved
    poor = Budget(0.000001)
    assert choose_within_budget(prices, LARGE, data, poor) == (BUILTIN, 0.0)
    with pytest.raises(FailedPrecondition, match="budget") as error:
        choose_within_budget({LARGE: Price(10.0, 30.0)}, LARGE, data, Budget(0.000001))
    assert error.value.reason == "BUDGET_EXCEEDED"
