"""The backend seam's value types: validation, the token-sharing rule, prices, and the public surface."""

from __future__ import annotations

import pytest

import router.backends
from router.backends import GenerationParams, TokenPrice, Usage, split_evenly
from core.llm import validate_messages
from core.errors import ConfigError


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n": 0}, "generation.n"),
        ({"n": True}, "generation.n"),
        ({"max_tokens": 0}, "generation.max_tokens"),
        ({"temperature": -0.1}, "generation.temperature"),
        ({"temperature": 2.5}, "generation.temperature"),
        ({"top_p": 0.0}, "generation.top_p"),
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
    price = TokenPrice(input_per_mtok_usd=2.0, output_per_mtok_usd=8.0)
    assert price.input_cost(500_000) == pytest.approx(1.0)
    assert price.output_cost(250_000) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        TokenPrice(-1.0, 0.0)


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
    modules = {"base", "fake", "litellm_backend", "local", "local_model", "openai_http"}
    assert set(router.backends.__all__) == public - modules
    assert router.backends.__all__ == sorted(router.backends.__all__, key=lambda n: (not n.isupper(), n))
