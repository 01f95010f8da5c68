"""The real BackendProvider: one backend per tier (and per pass-through model), built once and kept.

Local tiers load their model once per process (tiers sharing a model share it); hosted tiers use
LiteLLM, or plain OpenAI HTTP for OpenAI-compatible upstreams (`openai/...` or `hosted_vllm/...`
with an api_base) unless `direct_http` is off. Backends depend only on a tier's backend keys, so
a hot reload that edits a strategy keeps the loaded model.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import OrderedDict
from typing import TYPE_CHECKING

from policies.policy import Policy
from policies.pricing import TokenPrice as PolicyPrice
from policies.pricing import price_from_config
from policies.schema import Passthrough, Tier
from core.llm import Backend, TokenPrice
from core.errors import ConfigError

if TYPE_CHECKING:
    from router.backends import LocalModelLoader


def passthrough_allowed(model: str, config: Passthrough) -> bool:
    """Whether router.yaml's server.passthrough.models lets `model` through."""
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in config.models)


def backend_price(price: PolicyPrice) -> TokenPrice:
    """The policy's per-token price as the backends' per-million one."""
    return TokenPrice(price.input_per_million, price.output_per_million)


class DefaultBackends:
    """Real backends: local models loaded once per process, LiteLLM or plain HTTP for hosted tiers."""

    def __init__(self, *, direct_http: bool = True, max_passthrough_models: int = 64) -> None:
        self.direct_http = direct_http
        self._max_passthrough = max_passthrough_models
        self._tiers: dict[tuple[object, ...], Backend] = {}
        self._passthrough: OrderedDict[tuple[object, ...], Backend] = OrderedDict()
        self._lock = asyncio.Lock()
        self._loader: LocalModelLoader | None = None

    @staticmethod
    def _tier_key(tier: Tier) -> tuple[object, ...]:
        # Only what the backend depends on: a strategy edit keeps the loaded model.
        return (tier.backend, tier.model, tier.gguf_file, tier.device, tier.api_base, tier.api_key_env, tier.price)

    def preload(self, policy: Policy) -> None:
        """Build every tier's backend now; blocking (local models load here)."""
        for name in policy.tier_names:
            tier = policy.tier(name)
            key = self._tier_key(tier)
            if key not in self._tiers:
                self._tiers[key] = self._build_tier(tier, policy.price(name))

    async def for_tier(self, tier: Tier, price: PolicyPrice) -> Backend:
        """The tier's backend, built in a thread on first use (a hot reload may add tiers)."""
        key = self._tier_key(tier)
        backend = self._tiers.get(key)
        if backend is None:
            async with self._lock:
                backend = self._tiers.get(key)
                if backend is None:
                    backend = await asyncio.to_thread(self._build_tier, tier, price)
                    self._tiers[key] = backend
        return backend

    async def for_passthrough(self, model: str, config: Passthrough) -> Backend:
        """The backend forwarding to `model` with the pass-through settings (a few are kept)."""
        key = (model, config.api_base, config.api_key_env, config.price)
        backend = self._passthrough.get(key)
        if backend is None:
            backend = await asyncio.to_thread(self._build_passthrough, model, config)
            self._passthrough[key] = backend
            while len(self._passthrough) > self._max_passthrough:
                self._passthrough.popitem(last=False)
        else:
            self._passthrough.move_to_end(key)
        return backend

    def _build_tier(self, tier: Tier, price: PolicyPrice) -> Backend:
        if tier.backend == "local":
            from router.backends import LocalBackend, LocalModelLoader, LocalModelSpec, LocalPricing

            if self._loader is None:
                self._loader = LocalModelLoader()
            loader = self._loader
            spec = LocalModelSpec(model=tier.model, gguf_file=tier.gguf_file, device=tier.device or "auto")
            if tier.price is not None and tier.price.gpu_hour_usd is not None:
                pricing = LocalPricing(gpu_hour_usd=tier.price.gpu_hour_usd)  # measured busy time
            else:
                pricing = LocalPricing(price.input_per_million, price.output_per_million)
            return LocalBackend(loader.load(spec), pricing=pricing)
        return self._build_hosted(tier.model, tier.api_base, tier.api_key_env, backend_price(price), tier.price is not None)

    def _build_passthrough(self, model: str, config: Passthrough) -> Backend:
        explicit = config.price is not None
        price = TokenPrice()
        if config.price is not None:
            resolved = price_from_config(config.price)
            if isinstance(resolved, str):
                raise ConfigError(f"server.passthrough.price: {resolved}.")
            price = backend_price(resolved)
        name = model if config.api_base is None or "/" in model else f"openai/{model}"
        return self._build_hosted(name, config.api_base, config.api_key_env, price, explicit or config.api_base is not None)

    def _build_hosted(
        self, model: str, api_base: str | None, api_key_env: str | None, price: TokenPrice, explicit_price: bool
    ) -> Backend:
        from router.backends.openai_http import OpenAIHTTPBackend, OpenAIHTTPSettings, is_openai_compatible

        if self.direct_http and api_base is not None and is_openai_compatible(model, api_base):
            return OpenAIHTTPBackend(OpenAIHTTPSettings(model, api_base, api_key_env, price))
        from router.backends.litellm_backend import LiteLLMBackend, LiteLLMSettings

        return LiteLLMBackend(LiteLLMSettings(model, api_base, api_key_env, price if explicit_price else None))

    async def aclose(self) -> None:
        """Close pools and stop local workers."""
        for backend in [*self._tiers.values(), *self._passthrough.values()]:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()
