"""Is the Hugging Face hub in reach? A quick probe, so offline machines skip a minute of retries."""

from __future__ import annotations

import os

_TRUE = ("1", "true", "yes")


def hub_offline_by_setting() -> bool:
    """The user said offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the hub answers at all; False at once when offline is set or the name does not resolve."""
    if hub_offline_by_setting():
        return False
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return True
