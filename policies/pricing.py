"""Resolved prices of tiers: an explicit price wins, else LiteLLM's model price map, else zero for local tiers.

The result is core.llm's `TokenPrice`, the one price type: the policy estimates costs with it and
hands the same object to the tier's backend.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from core.errors import ConfigError
from core.llm import TokenPrice
from policies.schema import Passthrough, PriceConfig, Tier

__all__ = ["TokenPrice", "litellm_price", "passthrough_price", "price_from_config", "resolve_price"]


def price_from_config(price: PriceConfig) -> TokenPrice | str:
    """Turn an explicit `price:` into a resolved price, or say which keys are wrong."""
    per_million = (price.input_per_million, price.output_per_million)
    hourly = (price.gpu_hour_usd, price.tokens_per_second)
    if any(v is not None for v in per_million):
        if any(v is not None for v in (*hourly, price.prompt_tokens_per_second)):
            return (
                "give either input_per_million and output_per_million, or gpu_hour_usd and "
                "tokens_per_second, not both"
            )
        if price.input_per_million is None or price.output_per_million is None:
            return "give both input_per_million and output_per_million"
        return TokenPrice(price.input_per_million, price.output_per_million, "config")
    if price.gpu_hour_usd is None or price.tokens_per_second is None:
        return (
            "give input_per_million and output_per_million, or gpu_hour_usd and tokens_per_second"
        )
    # Generated tokens keep the machine busy for 1/tokens_per_second each; prompt tokens cost the
    # same unless their (much faster) prefill rate is given. A backend that measures busy time
    # (the local one) bills gpu_hour_usd for it instead of these estimates.
    per_second = price.gpu_hour_usd / 3600.0
    prompt_rate = price.prompt_tokens_per_second or price.tokens_per_second
    return TokenPrice(
        per_second / prompt_rate * 1e6,
        per_second / price.tokens_per_second * 1e6,
        "gpu_hour",
        gpu_hour_usd=price.gpu_hour_usd,
    )


def import_litellm() -> ModuleType:
    """Import litellm with its price map read from the package, not downloaded (unless the user chose)."""
    # Without this, importing litellm stalls for seconds trying to fetch prices from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner would go to our stdout
    return litellm


def litellm_price(model: str) -> TokenPrice | None:
    """The price LiteLLM's bundled price map gives `model` (also tried without a provider prefix)."""
    litellm = import_litellm()  # slow: only for hosted tiers without a price
    cost_map: dict[str, Any] = litellm.model_cost
    for key in (model, model.split("/", 1)[-1]):
        entry = cost_map.get(key)
        if entry is None:
            continue
        input_cost = entry.get("input_cost_per_token")
        output_cost = entry.get("output_cost_per_token")
        if isinstance(input_cost, int | float) and isinstance(output_cost, int | float):
            return TokenPrice(float(input_cost) * 1e6, float(output_cost) * 1e6, "litellm")
    return None


def resolve_price(tier: Tier) -> TokenPrice | str:
    """The tier's price, or a message saying how to set one."""
    if tier.price is not None:
        return price_from_config(tier.price)
    if tier.backend == "local":
        return TokenPrice(source="free")
    found = litellm_price(tier.model)
    if found is None:
        return (
            f"LiteLLM's price map does not know model '{tier.model}'; set price: "
            "{input_per_million: ..., output_per_million: ...} (or gpu_hour_usd and "
            "tokens_per_second for a self-hosted server)"
        )
    return found


def passthrough_price(config: Passthrough) -> TokenPrice | None:
    """Pass-through's price: the explicit one; else free on an own api_base; else None (LiteLLM prices each answer)."""
    if config.price is not None:
        resolved = price_from_config(config.price)
        if isinstance(resolved, str):
            raise ConfigError(f"server.passthrough.price: {resolved}.")
        return resolved
    return TokenPrice(source="free") if config.api_base is not None else None
