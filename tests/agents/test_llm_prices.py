"""The price table and the cost a model backend reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.agents.backends import make_model_backend
from agentmesh.agents.prices import DEFAULT_TABLE, Price, PriceTable, price_for


def test_cost_is_per_million_tokens() -> None:
    price = Price(input_per_mtok=3.0, output_per_mtok=15.0)
    assert price.cost(1_000_000, 0) == 3.0
    assert price.cost(2_000, 1_000) == pytest.approx(0.006 + 0.015)
    assert Price().cost(10**9, 10**9) == 0.0


def test_bundled_table_has_models_of_both_providers_and_a_free_default() -> None:
    table = PriceTable.load()
    assert table.default == Price(0.0, 0.0)
    assert any(name.startswith("gpt-") for name in table.models)
    assert any(name.startswith("claude-") for name in table.models)
    assert all(p.input_per_mtok > 0 and p.output_per_mtok > 0 for p in table.models.values())


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-5-latest", "claude-sonnet-4-5"),
    ],
)
def test_snapshots_cost_what_their_model_does(model: str, base: str) -> None:
    table = PriceTable.load()
    assert table.lookup(model) == table.models[base]


def test_a_longer_name_is_not_mistaken_for_its_prefix() -> None:
    table = PriceTable({"gpt-4o": Price(2.5, 10.0)}, default=Price(0.0, 0.0))
    assert table.lookup("gpt-4o-mini") == Price(0.0, 0.0)
    assert table.lookup("gpt-4o-2024-08-06") == Price(2.5, 10.0)


def test_unknown_and_local_models_are_free() -> None:
    assert price_for("gemma-3-270m", {}) == Price(0.0, 0.0)


def test_another_table_replaces_the_bundled_one(tmp_path: Path) -> None:
    table = tmp_path / "prices.toml"
    table.write_text(
        '[default]\ninput = 0.1\noutput = 0.2\n[models."mine"]\ninput = 1\noutput = 2\n'
    )
    env = {"AGENTMESH_PRICES": str(table)}
    assert price_for("mine", env) == Price(1.0, 2.0)
    assert price_for("gpt-4o", env) == Price(0.1, 0.2)  # not in this table: its default


def test_explicit_prices_override_each_half(tmp_path: Path) -> None:
    listed = PriceTable.load().lookup("gpt-4o")
    env = {"AGENTMESH_INPUT_PRICE_PER_MTOK": "9.5"}
    assert price_for("gpt-4o", env) == Price(9.5, listed.output_per_mtok)
    env = {"AGENTMESH_OUTPUT_PRICE_PER_MTOK": "0"}
    assert price_for("gpt-4o", env) == Price(listed.input_per_mtok, 0.0)


@pytest.mark.parametrize("raw", ["cheap", "-1"])
def test_bad_explicit_price_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="AGENTMESH_INPUT_PRICE_PER_MTOK"):
        price_for("gpt-4o", {"AGENTMESH_INPUT_PRICE_PER_MTOK": raw})


def test_malformed_table_names_the_file(tmp_path: Path) -> None:
    table = tmp_path / "broken.toml"
    table.write_text("[models\n")
    with pytest.raises(ValueError, match=r"broken\.toml"):
        price_for("gpt-4o", {"AGENTMESH_PRICES": str(table)})


def test_backend_declares_its_prices() -> None:
    env = {"ANTHROPIC_API_KEY": "k", "AGENTMESH_MODEL": "claude-sonnet-4-5-20250929"}
    backend = make_model_backend("anthropic", env)
    listed = PriceTable.load(DEFAULT_TABLE).models["claude-sonnet-4-5"]
    assert backend.input_price_per_mtok == listed.input_per_mtok
    assert backend.output_price_per_mtok == listed.output_per_mtok
