"""The real BackendProvider: one backend per tier (and per pass-through model), built once and kept.

Local tiers load their model once per process (tiers sharing a model share it); hosted tiers use
LiteLLM, or plain OpenAI HTTP for OpenAI-compatible upstreams (`openai/...` or `hosted_vllm/...`
with an api_base) unless `direct_http` is off. Backends depend only on a tier's backend keys, so
a hot reload that edits a strategy keeps the loaded model. Each backend gets the price the policy
resolved for its tier, unchanged.

Pass-through never lets the client pick a provider or an upstream: with
`server.passthrough.api_base` every name goes there as an OpenAI-compatible model, sent as-is;
without one, only names that `server.passthrough.models` (written by the operator) allows are
forwarded, through LiteLLM.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections import OrderedDict
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.llm import Backend, TokenPrice
from policies.policy import Policy
from policies.pricing import passthrough_price
from policies.schema import Passthrough, Tier

if TYPE_CHECKING:
    from router.backends import LocalModelLoader


def passthrough_allowed(model: str, config: Passthrough) -> bool:
    """Whether router.yaml's server.passthrough.models lets `model` through."""
    return any(fnmatch.fnmatchcase(model, pattern) for pattern in config.models)


class DefaultBackends:
    """Real backends: local models loaded once per process, LiteLLM or plain HTTP for hosted tiers."""

    def __init__(self, *, direct_http: bool = True, max_passthrough_models: int = 64) -> None:
        self.direct_http = direct_http
        self._max_passthrough = max_passthrough_models
        self._tiers: dict[tuple[object, ...], Backend] = {}
        self._passthrough: OrderedDict[tuple[object, ...], Backend] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        # Its own lock: a pass-through build must not wait behind a local model loading for a tier.
        self._passthrough_lock = asyncio.Lock()
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

    async def for_tier(self, tier: Tier, price: TokenPrice) -> Backend:
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
        """The backend forwarding to `model` with the pass-through settings (the most recent few are kept)."""
        if config.api_base is None and not passthrough_allowed(model, config):
            raise ConfigError(
                f"server.passthrough.models does not allow {model!r}; add a pattern for it, or set "
                "server.passthrough.api_base to forward every name to one OpenAI-compatible upstream."
            )
        key = (model, config.api_base, config.api_key_env, config.price)
        backend = self._passthrough.get(key)
        if backend is None:
            # Under the lock, checked again: concurrent first requests each built a backend, and
            # all but the one kept were never closed (their connection pools leaked).
            async with self._passthrough_lock:
                backend = self._passthrough.get(key)
                if backend is None:
                    backend = await asyncio.to_thread(self._build_passthrough, model, config)
                    self._passthrough[key] = backend
                    while len(self._passthrough) > self._max_passthrough:
                        _, evicted = self._passthrough.popitem(last=False)
                        self._close_later(evicted)
                    return backend
        self._passthrough.move_to_end(key)
        return backend

    def _close_later(self, backend: Backend) -> None:
        """Close an evicted backend's pool in the background (it waits for requests still using it)."""
        close = getattr(backend, "aclose", None)
        if close is not None:
            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _build_tier(self, tier: Tier, price: TokenPrice) -> Backend:
        if tier.backend == "local":
            from router.backends import LocalBackend, LocalModelLoader, LocalModelSpec

            if self._loader is None:
                self._loader = LocalModelLoader()
            spec = LocalModelSpec(model=tier.model, gguf_file=tier.gguf_file, device=tier.device or "auto")
            return LocalBackend(self._loader.load(spec), price=price)
        return self._build_hosted(tier.model, tier.api_base, tier.api_key_env, price)

    def _build_passthrough(self, model: str, config: Passthrough) -> Backend:
        price = passthrough_price(config)
        if config.api_base is None:
            return self._build_hosted(model, None, config.api_key_env, price)
        # The client's name is the upstream's model name, never a LiteLLM provider prefix.
        if self.direct_http:
            from router.backends.openai_http import OpenAIHTTPBackend, OpenAIHTTPSettings

            settings = OpenAIHTTPSettings(model, config.api_base, config.api_key_env, price or TokenPrice(source="free"))
            return OpenAIHTTPBackend(settings)
        return self._build_hosted(f"openai/{model}", config.api_base, config.api_key_env, price)

    def _build_hosted(self, model: str, api_base: str | None, api_key_env: str | None, price: TokenPrice | None) -> Backend:
        from router.backends.openai_http import OpenAIHTTPBackend, OpenAIHTTPSettings, openai_compatible_model

        upstream_model = openai_compatible_model(model, api_base)
        if self.direct_http and api_base is not None and upstream_model is not None:
            return OpenAIHTTPBackend(OpenAIHTTPSettings(upstream_model, api_base, api_key_env, price or TokenPrice()))
        from router.backends.litellm_backend import LiteLLMBackend, LiteLLMSettings

        return LiteLLMBackend(LiteLLMSettings(model, api_base, api_key_env, price))

    async def aclose(self) -> None:
        """Close pools and stop local workers."""
        for backend in [*self._tiers.values(), *self._passthrough.values()]:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()
        if self._closing:
            await asyncio.gather(*self._closing)
