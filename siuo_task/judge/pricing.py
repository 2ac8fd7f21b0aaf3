"""Judge cost estimates from the dated price table in configs/judge_prices.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from siuo_task.resources import config_text


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The dated price table, configs/judge_prices.json."""
    return json.loads(config_text("judge_prices.json"))


def priced_endpoint(endpoint: str | None) -> bool:
    """Calls to ``endpoint`` cost the table's prices: its host is the provider's (None: unknown
    endpoint, e.g. records written before endpoints were kept, is taken as priced)."""
    if endpoint is None:
        return True
    return (urlsplit(endpoint).hostname or "") in price_table().get("hosts", [])


def price_for(model: str, endpoint: str | None = None) -> dict[str, float] | None:
    """USD per million input/output tokens: exact name, else the longest listed prefix; None for
    a model the table does not list, or one served by another host (a local server)."""
    if not priced_endpoint(endpoint):
        return None
    models: dict[str, dict[str, float]] = price_table()["models"]
    if model in models:
        return models[model]
    prefixes = [name for name in models if model.startswith(name)]
    return models[max(prefixes, key=len)] if prefixes else None


def estimate_cost_usd(
    models: Sequence[str], prompt_tokens: int, completion_tokens: int, endpoint: str | None = None
) -> float | None:
    """Cost of the tokens at the price of ``models`` (which must agree) at ``endpoint``; None if unknown."""
    prices = {json.dumps(price_for(model, endpoint), sort_keys=True) for model in models}
    if len(prices) != 1 or "null" in prices:
        return None
    price = json.loads(prices.pop())
    return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1_000_000


def unknown_cost(model: str, endpoint: str | None = None) -> str:
    """A cost that cannot be given, with why, as every command shows it: the calls went to a host
    the table does not price (a local server), or the table lists no price for the model."""
    if endpoint is not None and not priced_endpoint(endpoint):
        host = urlsplit(endpoint).hostname or endpoint
        hosts = ", ".join(price_table().get("hosts", []))
        return f"unknown (no price for {model} at {host}: only calls to {hosts} are priced)"
    return f"unknown (no price for {model} in configs/judge_prices.json)"
