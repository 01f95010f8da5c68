"""Per-token prices of tiers: an explicit price wins, else LiteLLM's model price map, else zero for local tiers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from policies.schema import PriceConfig, Tier


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per input token and per output token, and where the figures came from."""

    input_per_token: float
    output_per_token: float
    source: str

    @property
    def input_per_million(self) -> float:
        """USD per million input tokens."""
        return self.input_per_token * 1e6

    @property
    def output_per_million(self) -> float:
        """USD per million output tokens."""
        return self.output_per_token * 1e6


def price_from_config(price: PriceConfig) -> TokenPrice | str:
    """Turn an explicit `price:` into per-token figures, or say which keys are wrong."""
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
        return TokenPrice(price.input_per_million / 1e6, price.output_per_million / 1e6, "config")
    if price.gpu_hour_usd is None or price.tokens_per_second is None:
        return (
            "give input_per_million and output_per_million, or gpu_hour_usd and tokens_per_second"
        )
    # Generated tokens keep the machine busy for 1/tokens_per_second each; prompt tokens cost the
    # same unless their (much faster) prefill rate is given.
    per_second = price.gpu_hour_usd / 3600.0
    output = per_second / price.tokens_per_second
    prompt_rate = price.prompt_tokens_per_second or price.tokens_per_second
    return TokenPrice(per_second / prompt_rate, output, "gpu_hour")


def litellm_price(model: str) -> TokenPrice | None:
    """The price LiteLLM's bundled price map gives `model` (also tried without a provider prefix)."""
    # The bundled map: without this LiteLLM tries to download prices at import and stalls offline.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # slow: only for hosted tiers without a price

    cost_map: dict[str, Any] = litellm.model_cost
    for key in (model, model.split("/", 1)[-1]):
        entry = cost_map.get(key)
        if entry is None:
            continue
        input_cost = entry.get("input_cost_per_token")
        output_cost = entry.get("output_cost_per_token")
        if isinstance(input_cost, int | float) and isinstance(output_cost, int | float):
            return TokenPrice(float(input_cost), float(output_cost), "litellm")
    return None


def resolve_price(tier: Tier) -> TokenPrice | str:
    """The tier's per-token price, or a message saying how to set one."""
    if tier.price is not None:
        return price_from_config(tier.price)
    if tier.backend == "local":
        return TokenPrice(0.0, 0.0, "local default (free)")
    found = litellm_price(tier.model)
    if found is None:
        return (
            f"LiteLLM's price map does not know model '{tier.model}'; set price: "
            "{input_per_million: ..., output_per_million: ...} (or gpu_hour_usd and "
            "tokens_per_second for a self-hosted server)"
        )
    return found
