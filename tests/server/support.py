"""Helpers for the proxy tests: a uvicorn server in a thread, fake backends and classifier, policies."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydantic
import uvicorn

from policies.policy import Policy
from policies.schema import Passthrough, Tier
from router.backends import Backend, FakeBackend
from core.llm import Completion, GenerationParams, Message, TokenPrice
from tests.conftest import free_port, wait_for


class ServerThread:
    """Runs an ASGI app with uvicorn on 127.0.0.1 in a daemon thread (as httpx's own tests do)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class KeywordScorer:
    """A deterministic classifier: 0.9 for prompts containing 'hard', 0.1 otherwise."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict_score(self, texts: Sequence[str], score: str = "difficulty") -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([0.9 if "hard" in text else 0.1 for text in texts])


class SlowBackend:
    """A Backend that takes `delay_s` and records whether it was cancelled while working."""

    def __init__(self, delay_s: float = 5.0) -> None:
        self.delay_s = delay_s
        self.started = threading.Event()
        self.cancelled = threading.Event()

    async def generate(self, messages: Sequence[Message], params: GenerationParams) -> list[Completion]:
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("the slow backend was not cancelled")


class FakeBackends:
    """A BackendProvider over fixed backends per tier name; pass-through models are refused."""

    def __init__(self, tiers: Mapping[str, Backend]) -> None:
        self.tiers = dict(tiers)

    async def for_tier(self, tier: Tier, price: TokenPrice) -> Backend:
        return self.tiers[tier.name]

    async def for_passthrough(self, model: str, config: Passthrough) -> Backend:
        return self.tiers["passthrough"]

    def preload(self, policy: Policy) -> None:
        return None

    async def aclose(self) -> None:
        return None


def fake_tiers(**overrides: Backend) -> dict[str, Backend]:
    """fast: one fixed answer; deep: votes over '42', '42', '41' (3 samples)."""
    tiers: dict[str, Backend] = {
        "fast": FakeBackend(["fast answer is 7"], model="fake-fast", price=TokenPrice(1.0, 2.0)),
        "deep": FakeBackend(
            ["so the answer is 42", "Answer: 42", "I think 41"], model="fake-deep", price=TokenPrice(10.0, 20.0)
        ),
    }
    tiers.update(overrides)
    return tiers


FAKE_POLICY = """
tiers:
  - name: fast
    backend: litellm
    model: openai/fast-model
    api_base: {upstream}
    price: {{input_per_million: 1.0, output_per_million: 2.0}}
    max_tokens: 64
    expected_output_tokens: 16
    timeout_s: {timeout}
  - name: deep
    backend: litellm
    model: openai/deep-model
    api_base: {upstream}
    price: {{input_per_million: 10.0, output_per_million: 20.0}}
    max_tokens: 128
    expected_output_tokens: 32
    timeout_s: {timeout}
    strategy: {{type: self_consistency, n: 3, answer_type: number, chain_of_thought: false}}
rules:
  - name: easy
    when: {{difficulty: {{min: 0.0, max: 0.5}}}}
    tier: fast
  - name: hard
    when: {{difficulty: {{min: 0.5, max: 1.0}}}}
    tier: deep
  - name: default
    tier: fast
fallbacks:
  deep: [fast]
"""


def serving(port: int, timeout_s: float = 120) -> bool:
    """Whether a `router serve` process on `port` answers /readyz with 200 within `timeout_s`."""

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.TransportError:
            return False

    return wait_for(ready, timeout_s, 0.1)


def write_policy(path: Path, *, upstream: str = "http://127.0.0.1:9/v1", timeout: float = 10, extra: str = "") -> Path:
    """A two-tier policy (fast direct, deep self-consistency n=3) plus `extra` YAML appended."""
    path.write_text(FAKE_POLICY.format(upstream=upstream, timeout=timeout) + textwrap.dedent(extra))
    return path


# Shared by the drop-in tests: a pass-through section for an upstream at {url}, a tool, a structured answer.
PASSTHROUGH = """
server:
  passthrough:
    models: ["up-*"]
    api_base: {url}
    price: {{input_per_million: 1.0, output_per_million: 1.0}}
"""
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool
