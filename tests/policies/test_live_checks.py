"""router policy check catches live-traffic settings that name no tier or cannot work."""

from __future__ import annotations

import pytest

from core.errors import PolicyError
from policies import parse_policy

BASE = """
tiers:
  - {name: fast, backend: litellm, model: openai/a, price: {input_per_million: 1, output_per_million: 1}}
  - {name: strong, backend: litellm, model: openai/b, price: {input_per_million: 9, output_per_million: 9}}
rules:
  - {name: default, tier: fast}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("grading: {judge_tier: judge, sample: 0.1}\n", "grading.judge_tier: no tier named 'judge'"),
        ("grading: {sample: 0.1}\n", "grading.judge_tier: grading.sample is above 0"),
        ("exploration: {sample: 0.1, tiers: [fast, huge]}\nledger: {store_prompts: true}\n", "exploration.tiers[1]: no tier named 'huge'"),
        ("exploration: {sample: 0.1}\n", "ledger.store_prompts: exploration gathers training rows"),
    ],
)
def test_live_sections_are_checked(extra: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_policy(BASE + extra)


def test_a_complete_live_setup_loads() -> None:
    policy = parse_policy(
        BASE + "grading: {judge_tier: strong, sample: 0.2}\nexploration: {sample: 0.05}\nledger: {store_prompts: true}\n"
    )
    assert policy.config.grading.judge_tier == "strong"
