"""Judge cost estimates from the dated price table in configs/judge_prices.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from siuo_task.resources import config_text


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The dated price table, configs/judge_prices.json."""
    return json.loads(config_text("judge_prices.json"))


def price_for(model: str) -> dict[str, float] | None:
    """USD per million input/output tokens: exact name, else the longest listed prefix."""
    models: dict[str, dict[str, float]] = price_table()["models"]
    if model in models:
        return models[model]
    prefixes = [name for name in models if model.startswith(name)]
    return models[max(prefixes, key=len)] if prefixes else None


def estimate_cost_usd(models: Sequence[str], prompt_tokens: int, completion_tokens: int) -> float | None:
    """Cost of the tokens at the price of ``models`` (which must agree); None if unknown."""
    prices = {json.dumps(price_for(model), sort_keys=True) for model in models}
    if len(prices) != 1 or "null" in prices:
        return None
    price = json.loads(prices.pop())
    return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1_000_000
