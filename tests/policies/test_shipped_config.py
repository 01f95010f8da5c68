"""The shipped router.yaml, its commented hosted examples, and the example in docs/policy.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policies import load_policy, parse_policy
from strategies import SelfConsistency
from router.cli import app
from core.errors import PolicyError
from tests.conftest import REPO
from tests.policies.support import TWO_TIERS

SHIPPED = REPO / "router.yaml"


def uncomment_examples(text: str) -> str:
    """Turn the commented, ready-made YAML entries (`  # - ...` and their keys) into live ones."""
    return "".join(
        re.sub(r"^(\s*)# ", r"\1", line, count=1) if re.match(r"^\s*# (- |  +\S)", line) else line
        for line in text.splitlines(keepends=True)
    )


def test_shipped_policy_is_valid_and_offline() -> None:
    policy = load_policy(SHIPPED)
    assert policy.tier_names == ("fast", "deep")
    assert {policy.tier(name).backend for name in policy.tier_names} == {"local"}
    assert {policy.tier(name).model for name in policy.tier_names} == {
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    }
    deep = policy.tier("deep").strategy
    assert isinstance(deep, SelfConsistency) and deep.n == 3 and deep.chain_of_thought
    # Sized for the embedded model on a CPU: the worst case (every sample and the escalation's
    # extra ones writing max_tokens) stays within a few minutes at ~30 tokens/s.
    samples = deep.n + sum(step.then.more_samples or 0 for step in policy.escalation("deep"))
    assert samples * policy.tier("deep").max_tokens / 30 < 5 * 60
    assert policy.tiers_by_cost == ("fast", "deep")
    assert policy.config.rules[-1].when is None
    assert policy.decide("What is 2 + 3?", 0.9).tier == "deep"
    assert policy.decide("What is 2 + 3?", 0.1).tier == "fast"
    assert policy.classifier_path is None


def test_router_policy_check_passes_on_the_shipped_file() -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_commented_hosted_examples_are_ready_to_use() -> None:
    text = uncomment_examples(SHIPPED.read_text())
    policy = parse_policy(text, source="router.yaml (examples uncommented)")
    assert policy.tier_names == ("fast", "deep", "mini", "reasoner", "claude-thinking", "vllm")
    # Prices from LiteLLM's bundled map where it knows the model, from the GPU hour for vLLM.
    for name in ("mini", "reasoner", "claude-thinking"):
        assert policy.price(name).source == "litellm", name
        assert policy.price(name).output_per_token > 0
    assert policy.price("vllm").source == "gpu_hour"
    assert policy.tier("reasoner").strategy.type == "reasoning"
    assert policy.tier("vllm").model.startswith("hosted_vllm/")
    assert [rule.name for rule in policy.config.rules] == [
        "long-prompt",
        "easy",
        "hard",
        "support-app",
        "default",
    ]
    assert [step.then.to_tier for step in policy.config.escalation] == [None, "mini"]


def test_hosted_model_without_a_known_price_must_set_one() -> None:
    text = TWO_TIERS.replace("    price: {input_per_million: 1.0, output_per_million: 2.0}\n", "")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="router.yaml")
    assert str(caught.value) == (
        "tiers[0].price: LiteLLM's price map does not know model 'test/weak'; set price: "
        "{input_per_million: ..., output_per_million: ...} (or gpu_hour_usd and tokens_per_second "
        "for a self-hosted server) (router.yaml line 3)"
    )


def test_the_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "policy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.S)
    assert blocks, "docs/policy.md has no yaml example"
    path = tmp_path / "router.yaml"
    path.write_text(blocks[0])
    policy = load_policy(path)
    assert len(policy.tier_names) >= 2
