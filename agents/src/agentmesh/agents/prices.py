"""Model prices, for the cost a worker reports with each subtask's usage.

The table is `data/prices.toml` (US dollars per million input and output
tokens, by model name, with a `[default]` for unknown and local models);
`AGENTMESH_PRICES` names another table that replaces it, and
`AGENTMESH_INPUT_PRICE_PER_MTOK` / `AGENTMESH_OUTPUT_PRICE_PER_MTOK` set one
worker's prices outright.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TABLE = Path(__file__).parent / "data" / "prices.toml"

# A dated snapshot of a model ("gpt-4o-2024-08-06", "claude-haiku-4-5-20251001") or
# its "-latest" alias costs what the model does.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True)
class Price:
    """What a model costs, in US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """US dollars for this many tokens."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, and the price of any other model."""

    models: Mapping[str, Price]
    default: Price = Price()

    def lookup(self, model: str) -> Price:
        """The model's price: by exact name, then without a snapshot suffix, else the default."""
        if model in self.models:
            return self.models[model]
        base = _SNAPSHOT.sub("", model)
        return self.models.get(base, self.default)

    @classmethod
    def load(cls, path: Path = DEFAULT_TABLE) -> PriceTable:
        """A table from a TOML file; ValueError naming the file if it is malformed."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
            models = {name: _price(entry) for name, entry in raw.get("models", {}).items()}
            default = _price(raw.get("default", {}))
        except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"cannot read the price table {path}: {error}") from None
        return cls(models, default)


def _price(entry: Mapping[str, object]) -> Price:
    return Price(_dollars(entry, "input"), _dollars(entry, "output"))


def _dollars(entry: Mapping[str, object], key: str) -> float:
    value = entry.get(key, 0.0)
    if not isinstance(value, int | float | str):
        raise TypeError(f"{key} is not a number: {value!r}")
    return float(value)


def price_for(model: str, env: Mapping[str, str]) -> Price:
    """The price a worker running `model` reports, following the environment's overrides."""
    table_path = env.get("AGENTMESH_PRICES")
    price = PriceTable.load(Path(table_path) if table_path else DEFAULT_TABLE).lookup(model)
    return Price(
        _float(env, "AGENTMESH_INPUT_PRICE_PER_MTOK", price.input_per_mtok),
        _float(env, "AGENTMESH_OUTPUT_PRICE_PER_MTOK", price.output_per_mtok),
    )


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} is negative")
    return value
