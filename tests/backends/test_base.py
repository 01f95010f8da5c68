"""The backend seam's value types: validation, the token-sharing rule, prices, and the public surface."""

from __future__ import annotations

import pytest

import router.backends
from router.backends import GenerationParams, TokenPrice, Usage, split_evenly
from core.llm import estimate_stream_usage, validate_messages
from core.errors import ConfigError


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n": 0}, "generation.n"),
        ({"n": True}, "generation.n"),
        ({"max_tokens": 0}, "generation.max_tokens"),
        ({"temperature": -0.1}, "generation.temperature"),
        ({"temperature": 2.5}, "generation.temperature"),
        ({"top_p": -0.1}, "generation.top_p"),
        ({"timeout_s": 0}, "generation.timeout_s"),
        ({"stop": "\n"}, "generation.stop"),
        ({"stop": ("",)}, "generation.stop"),
        ({"reasoning_effort": "extreme"}, "generation.reasoning_effort"),
        ({"thinking_budget_tokens": 0}, "generation.thinking_budget_tokens"),
        ({"reasoning_effort": "low", "thinking_budget_tokens": 1024}, "not both"),
    ],
)
def test_generation_params_name_the_bad_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GenerationParams(**changes)  # type: ignore[arg-type]


def test_replace_validates_again() -> None:
    params = GenerationParams(n=2, temperature=0.7)
    assert params.replace(n=5).n == 5
    with pytest.raises(ConfigError, match="generation.n"):
        params.replace(n=0)


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(6, 2, [3, 3]), (7, 3, [3, 2, 2]), (0, 3, [0, 0, 0]), (2, 4, [1, 1, 0, 0]), (5, 1, [5]), (5, 0, [])],
)
def test_split_evenly_sums_to_the_total(total: int, parts: int, expected: list[int]) -> None:
    assert split_evenly(total, parts) == expected
    assert sum(expected) == (total if parts else 0)


def test_usage_adds_and_price_costs() -> None:
    assert Usage(3, 4) + Usage(1, 2) == Usage(4, 6)
    price = TokenPrice(input_per_million=2.0, output_per_million=8.0)
    assert price.input_cost(500_000) == pytest.approx(1.0)
    assert price.output_cost(250_000) == pytest.approx(2.0)
    assert price.input_per_token == pytest.approx(2e-6) and price.source == "explicit"
    assert price.cost(500_000, 250_000) == pytest.approx(3.0)
    assert price.cost(500_000, 250_000, busy_s=10) == pytest.approx(3.0)  # no hourly price: tokens
    with pytest.raises(ConfigError, match="must be >= 0"):
        TokenPrice(-1.0, 0.0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        TokenPrice(gpu_hour_usd=-1.0)


def test_an_hourly_price_bills_measured_busy_time_when_there_is_one() -> None:
    price = TokenPrice(1.0, 2.0, "gpu_hour", gpu_hour_usd=3.6)
    assert price.cost(1_000_000, 500_000, busy_s=10) == pytest.approx(0.01)  # $3.60/h for 10 s
    assert price.cost(1_000_000, 500_000, busy_s=0.0) == 0.0  # a copied sample keeps the machine idle
    assert price.cost(1_000_000, 500_000) == pytest.approx(2.0)  # no busy time measured: the estimate


@pytest.mark.parametrize(
    ("prompt", "pieces", "expected"),
    [
        ("abcdefgh", ["one two three four"], Usage(2, 5)),  # batched: 18 characters, about 5 tokens
        ("abcdefghi", ["x", "y", "z", "w", "v"], Usage(3, 5)),  # token by token: 5 pieces beat 2 estimated
        ("a", [], Usage(1, 1)),  # an empty answer still counts one token
    ],
)
def test_a_stream_without_usage_is_estimated(prompt: str, pieces: list[str], expected: Usage) -> None:
    assert estimate_stream_usage([{"role": "user", "content": prompt}], pieces) == expected


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "user"}], r"messages\[0\].content"),
        ([{"role": "", "content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": "x"}, "oops"], r"messages\[1\]"),
    ],
)
def test_messages_are_checked(messages: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_messages(messages)  # type: ignore[arg-type]


def test_all_is_exactly_the_public_surface() -> None:
    public = {name for name in vars(router.backends) if not name.startswith("_")}
    modules = {"fake", "litellm_backend", "local", "local_model", "openai_http"}
    assert set(router.backends.__all__) == public - modules
    assert router.backends.__all__ == sorted(router.backends.__all__, key=lambda n: (not n.isupper(), n))
